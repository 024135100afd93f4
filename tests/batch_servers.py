"""A local HTTP server implementing the three providers' batch endpoints (and their online calls), answering every
request as the offline demo service LLM does (`llamaduo.demo.demo_reply`; token counts are word counts).

`BatchServer` on 127.0.0.1 (random free port) speaks:
  OpenAI     POST /v1/files (multipart, purpose=batch), GET /v1/files/{id}/content, POST /v1/batches,
             GET /v1/batches (list), GET /v1/batches/{id}, POST /v1/batches/{id}/cancel; online POST /v1/chat/completions
  Anthropic  POST /v1/messages/batches, GET /v1/messages/batches/{id}, GET /v1/messages/batches/{id}/results (JSONL),
             POST /v1/messages/batches/{id}/cancel; online POST /v1/messages
  Gemini     POST /{v}/models/{m}:batchGenerateContent (inline requests, or an uploaded JSONL file),
             GET /{v}/batches/{id}, POST /{v}/batches/{id}:cancel, the resumable upload POST /upload/{v}/files,
             GET /{v}/files/{id}:download; online POST /{v}/models/{m}:generateContent  ({v}: the SDK's api_version)

Controls (set them between calls; `reset()` restores the defaults):
  polls        a job ends at its `polls`-th poll (default 1)
  hold         while True no job ends unless cancelled (a client can be killed while it waits)
  faults       {substring: [status, ...]}: a request whose last user message contains `substring` fails with the next
               status of the list, one per execution (online or inside a job), then succeeds; 'echo': a 400 whose
               message echoes the caller's key (it must be redacted wherever it lands)
  expire_next  the next N jobs expire after running only `partial` (default half) of their requests
  cancel_next  the next N jobs end cancelled (as if from the console) after running `partial` of their requests
  poll_faults  the next N polls (of any job) fail with a 503
  invalid_next a message: the next job fails validation with it (Anthropic: the create call is rejected with it)
Records (a job's `name` is the id its client sees): `paid` (Counter of custom_id -> executions answered 200 inside jobs: what one pays for), `online` (online calls
answered 200), `executed` (every execution: (protocol, request body, custom_id or None)), `jobs` (id -> job), `uploads`.

    python tests/batch_servers.py    # serve until Ctrl-C (for a full demo loop against it; see tests/test_batch.py)
"""
import collections, itertools, json, re, threading, time
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler
from fake_servers import LocalServer

def _words(s): return len(str(s).split())
def _text(c): return c if isinstance(c, str) else ' '.join(p.get('text', '') for p in c or [] if isinstance(p, dict))
def _iso(t): return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t))

def messages_of(kind:str, req:dict)->list[dict]:
    "The chat of a request of protocol `kind` ('openai' | 'anthropic' | 'gemini') as OpenAI-style messages."
    if kind == 'openai': return [dict(role=m['role'], content=_text(m['content'])) for m in req.get('messages', [])]
    if kind == 'anthropic':
        sys_ = [{'role': 'system', 'content': _text(req['system'])}] if req.get('system') else []
        return sys_ + [dict(role=m['role'], content=_text(m['content'])) for m in req.get('messages', [])]
    si = req.get('systemInstruction') or req.get('system_instruction')
    sys_ = [{'role': 'system', 'content': ' '.join(p.get('text', '') for p in si.get('parts', []))}] if si else []
    return sys_ + [{'role': 'assistant' if c.get('role') == 'model' else 'user', 'content': ' '.join(p.get('text', '') for p in c.get('parts', []))}
                   for c in req.get('contents', [])]

def reply_body(kind:str, req:dict, text:str, tin:int)->dict:
    "A successful reply of protocol `kind` carrying `text`."
    tout = _words(text)
    if kind == 'openai':
        return {'id': 'chatcmpl-1', 'object': 'chat.completion', 'created': 0, 'model': req.get('model'),
                'choices': [{'index': 0, 'finish_reason': 'stop', 'message': {'role': 'assistant', 'content': text}}],
                'usage': {'prompt_tokens': tin, 'completion_tokens': tout, 'total_tokens': tin + tout}}
    if kind == 'anthropic':
        return {'id': 'msg_1', 'type': 'message', 'role': 'assistant', 'model': req.get('model'), 'content': [{'type': 'text', 'text': text}],
                'stop_reason': 'end_turn', 'stop_sequence': None, 'usage': {'input_tokens': tin, 'output_tokens': tout}}
    return {'candidates': [{'content': {'role': 'model', 'parts': [{'text': text}]}, 'finishReason': 'STOP', 'index': 0}],
            'usageMetadata': {'promptTokenCount': tin, 'candidatesTokenCount': tout, 'totalTokenCount': tin + tout}, 'modelVersion': 'fake'}

def error_body(kind:str, status:int, msg:str|None=None)->dict:
    t, msg = {400: 'invalid_request_error', 429: 'rate_limit_error', 529: 'overloaded_error'}.get(status, 'api_error'), msg or f'fake {status}'
    if kind == 'anthropic': return {'type': 'error', 'error': {'type': t, 'message': msg}}
    return {'error': {'message': msg, 'type': t, 'code': status, 'status': 'ERROR'}}

def key_of(h)->str:
    "The API key a request carried (OpenAI bearer, Anthropic x-api-key, Gemini x-goog-api-key)."
    return (h.headers.get('Authorization') or '').removeprefix('Bearer ').strip() or h.headers.get('x-api-key') or h.headers.get('x-goog-api-key') or ''

class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a): pass
    def send(self, code, obj=None, body=None, headers=None, ctype='application/json'):
        body = body if body is not None else json.dumps(obj).encode()
        self.send_response(code); self.send_header('Content-Type', ctype); self.send_header('Content-Length', str(len(body)))
        for k, v in (headers or {}).items(): self.send_header(k, v)
        self.end_headers(); self.wfile.write(body)
    def do_GET(self): self._route('GET')
    def do_POST(self): self._route('POST')
    def _route(self, method):
        srv, raw = self.server.owner, b''
        if method == 'POST': raw = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        path, _, query = self.path.partition('?')
        with srv.lock: srv.log.append((method, path))
        for m, pat, name in ROUTES:
            if m == method and (mt := re.fullmatch(pat, path)): return getattr(srv, name)(self, raw, query, *mt.groups())
        self.send(404, {'error': {'message': f'no route {method} {path}', 'type': 'not_found_error', 'code': 404, 'status': 'NOT_FOUND'}})

V = r'/v1[a-z0-9]*'   # the Gemini SDK's api_version (v1, v1beta) is part of its paths
ROUTES = [('POST', r'/v1/chat/completions', 'online_openai'), ('POST', r'/v1/messages', 'online_anthropic'),
          ('POST', V + r'/models/([^/:]+):generateContent', 'online_gemini'),
          ('POST', r'/v1/files', 'oa_upload'), ('GET', r'/v1/files/([^/]+)/content', 'oa_content'),
          ('POST', r'/v1/batches', 'oa_create'), ('GET', r'/v1/batches', 'oa_list'), ('GET', V + r'/batches/([^/:]+)', 'get_job'),
          ('POST', r'/v1/batches/([^/]+)/cancel', 'oa_cancel'),
          ('POST', r'/v1/messages/batches', 'an_create'), ('GET', r'/v1/messages/batches/([^/]+)', 'an_get'),
          ('GET', r'/v1/messages/batches/([^/]+)/results', 'an_results'), ('POST', r'/v1/messages/batches/([^/]+)/cancel', 'an_cancel'),
          ('POST', V + r'/models/([^/:]+):batchGenerateContent', 'ge_create'),
          ('POST', V + r'/batches/([^/:]+):cancel', 'ge_cancel'), ('POST', r'/upload' + V + r'/files', 'ge_upload'),
          ('GET', V + r'/files/([^/:]+):download', 'ge_download')]

class BatchServer(LocalServer):
    "The three providers' batch APIs and online calls on one threaded local server; use as a context manager."
    def __init__(self):
        super().__init__(_Handler, queue=256)
        self.lock, self.ids = threading.RLock(), itertools.count(1)
        self.reset()

    def reset(self):
        with self.lock:
            self.polls, self.hold, self.faults, self.partial = 1, False, {}, 0.5
            self.expire_next = self.cancel_next = self.poll_faults = 0; self.invalid_next = None
            self.paid, self.online, self.executed, self.log = collections.Counter(), 0, [], []
            self.jobs, self.files, self.uploads = {}, {}, []

    # --- executing one request (online or inside a job)
    def execute(self, kind:str, req:dict, cid:str|None=None, key:str='')->tuple[int, dict]:
        "Answer one request: (status, body). Scripted faults first; a 200 inside a job is one paid request."
        from llamaduo.demo_service import demo_reply
        msgs = messages_of(kind, req)
        last = next((m['content'] for m in reversed(msgs) if m['role'] == 'user'), '')
        with self.lock:
            self.executed.append((kind, req, cid))
            for sub, codes in self.faults.items():
                if sub in last and codes:
                    st = codes.pop(0)
                    return (400, error_body(kind, 400, f'invalid request of key {key}')) if st == 'echo' else (st, error_body(kind, st))
            if cid is None: self.online += 1
            else: self.paid[cid] += 1
        return 200, reply_body(kind, req, demo_reply(msgs), sum(_words(m['content']) for m in msgs))

    def _online(self, h, raw, kind):
        st, body = self.execute(kind, json.loads(raw or b'{}'), key=key_of(h))
        h.send(st, body)
    def online_openai(self, h, raw, q): self._online(h, raw, 'openai')
    def online_anthropic(self, h, raw, q): self._online(h, raw, 'anthropic')
    def online_gemini(self, h, raw, q, model): self._online(h, raw, 'gemini')

    # --- the life of a job, common to the three APIs
    def new_job(self, h, provider:str, requests:list[tuple], **kw)->dict:
        "A job of `requests` [(custom_id, kind, request body)]; its fate is decided now, it runs when it ends."
        with self.lock:
            fate = 'invalid' if self.invalid_next else 'expired' if self.expire_next else 'cancelled' if self.cancel_next else 'ok'
            msg, self.invalid_next = self.invalid_next, None
            if fate == 'expired': self.expire_next -= 1
            if fate == 'cancelled': self.cancel_next -= 1
            pre = {'openai': 'batch_', 'anthropic': 'msgbatch_', 'gemini': ''}[provider]
            id = f'{pre}{next(self.ids):04d}'
            job = dict(id=id, name=f'batches/{id}' if provider == 'gemini' else id, provider=provider, requests=requests, fate=fate, message=msg, polls=0,
                       state='running', results=None, created=time.time(), cancel=False, key=key_of(h), **kw)
            self.jobs[job['id']] = job
            return job

    def tick(self, job:dict)->dict:
        "One poll: the job ends at its `polls`-th poll (unless held); then its requests run (all, or `partial` of them)."
        with self.lock:
            job['polls'] += 1
            if job['state'] != 'running' or (not job['cancel'] and (self.hold or job['polls'] < self.polls)): return job  # a cancel ends it
            fate = 'cancelled' if job['cancel'] else job['fate']
            if fate == 'invalid': job['state'] = 'invalid'; return job
            n = len(job['requests']) if fate == 'ok' else int(len(job['requests']) * self.partial)
            if fate == 'expired' and job['provider'] == 'gemini': n = 0   # an expired Gemini job runs (and returns) nothing
            job['results'] = [(cid, kind, req, *self.execute(kind, req, cid, job['key'])) for cid, kind, req in job['requests'][:n]]
            job['unrun'] = [cid for cid, _, _ in job['requests'][n:]]
            job['state'], job['ended'] = fate, time.time()
            return job

    def _job(self, h, id):
        with self.lock:
            if h.command == 'GET' and self.poll_faults and not h.path.endswith('/results'):
                self.poll_faults -= 1; h.send(503, {'error': {'message': 'fake 503', 'type': 'api_error', 'code': 503, 'status': 'UNAVAILABLE'}}); return None
        if (j := self.jobs.get(id)) is None: h.send(404, {'error': {'message': f'no batch {id}', 'type': 'not_found_error', 'code': 404, 'status': 'NOT_FOUND'}})
        return j

    # --- OpenAI
    def oa_upload(self, h, raw, q):
        msg = BytesParser(policy=email_policy).parsebytes(b'Content-Type: ' + h.headers['Content-Type'].encode() + b'\r\n\r\n' + raw)
        parts = {p.get_param('name', header='content-disposition'): p.get_payload(decode=True) for p in msg.iter_parts()}
        with self.lock: fid = f'file-{next(self.ids):04d}'; self.files[fid] = parts['file']; self.uploads.append(fid)
        h.send(200, {'id': fid, 'object': 'file', 'bytes': len(parts['file']), 'created_at': int(time.time()), 'filename': 'batch.jsonl',
                     'purpose': parts['purpose'].decode(), 'status': 'processed'})
    def oa_content(self, h, raw, q, fid):
        if fid not in self.files: return h.send(404, {'error': {'message': f'no file {fid}'}})
        h.send(200, body=self.files[fid], ctype='application/octet-stream')
    def oa_create(self, h, raw, q):
        b = json.loads(raw)
        lines = [json.loads(l) for l in self.files[b['input_file_id']].decode().splitlines() if l.strip()]
        job = self.new_job(h, 'openai', [(l['custom_id'], 'openai', l['body']) for l in lines], input_file_id=b['input_file_id'],
                           endpoint=b['endpoint'], metadata=b.get('metadata'))
        h.send(200, self._oa_batch(job))
    def oa_list(self, h, raw, q): h.send(200, {'object': 'list', 'data': [], 'first_id': None, 'last_id': None, 'has_more': False})
    def get_job(self, h, raw, q, id):   # OpenAI's and Gemini's poll share a path
        if j := self._job(h, id): h.send(200, (self._oa_batch if j['provider'] == 'openai' else self._ge_batch)(self.tick(j)))
    def oa_cancel(self, h, raw, q, id):
        if j := self._job(h, id):
            j['cancel'] = True; h.send(200, {**self._oa_batch(j), 'status': 'cancelling'})
    def _oa_files(self, j):
        "The output and error files of an ended job (expired requests in the error file; cancelled ones in neither)."
        out, err = [], []
        for cid, kind, req, st, body in j['results']:
            (out if st == 200 else err).append({'id': f'batch_req_{cid[:8]}', 'custom_id': cid, 'response': {'status_code': st, 'request_id': 'r', 'body': body}, 'error': None})
        if j['state'] == 'expired':
            err += [{'id': f'batch_req_{c[:8]}', 'custom_id': c, 'response': None, 'error': {'code': 'batch_expired', 'message': 'not executed before the window expired'}}
                    for c in j['unrun']]
        ids = []
        for rows in (out, err):
            fid = None
            if rows: fid = f'file-{next(self.ids):04d}'; self.files[fid] = ''.join(json.dumps(r) + '\n' for r in rows).encode()
            ids.append(fid)
        return ids
    def _oa_batch(self, j):
        with self.lock:
            st = {'running': 'in_progress', 'ok': 'completed', 'expired': 'expired', 'cancelled': 'cancelled', 'invalid': 'failed'}[j['state']]
            if j['results'] is not None and 'files' not in j: j['files'] = self._oa_files(j)
            out, err = j.get('files', (None, None))
            done = [r for r in j['results'] or []]
            return {'id': j['id'], 'object': 'batch', 'endpoint': j['endpoint'], 'input_file_id': j['input_file_id'], 'completion_window': '24h',
                    'status': st, 'created_at': int(j['created']), 'output_file_id': out, 'error_file_id': err, 'metadata': j['metadata'],
                    'errors': {'object': 'list', 'data': [{'code': 'invalid_request', 'message': j['message'], 'line': 1}]} if st == 'failed' else None,
                    'request_counts': {'total': len(j['requests']), 'completed': sum(r[3] == 200 for r in done), 'failed': sum(r[3] != 200 for r in done)}}

    # --- Anthropic
    def an_create(self, h, raw, q):
        reqs = json.loads(raw)['requests']
        with self.lock:
            if msg := self.invalid_next: self.invalid_next = None; return h.send(400, {'type': 'error', 'error': {'type': 'invalid_request_error', 'message': msg}})
        h.send(200, self._an_batch(self.new_job(h, 'anthropic', [(r['custom_id'], 'anthropic', r['params']) for r in reqs])))
    def an_get(self, h, raw, q, id):
        if j := self._job(h, id): h.send(200, self._an_batch(self.tick(j)))
    def an_cancel(self, h, raw, q, id):
        if j := self._job(h, id): j['cancel'] = True; h.send(200, {**self._an_batch(j), 'processing_status': 'canceling'})
    def an_results(self, h, raw, q, id):
        if not (j := self._job(h, id)): return
        rows = [{'custom_id': cid, 'result': {'type': 'succeeded', 'message': body} if st == 200 else {'type': 'errored', 'error': body}}
                for cid, kind, req, st, body in j['results']]
        rows += [{'custom_id': c, 'result': {'type': 'expired' if j['state'] == 'expired' else 'canceled'}} for c in j['unrun']]
        h.send(200, body=''.join(json.dumps(r) + '\n' for r in rows).encode(), ctype='application/binary')
    def _an_batch(self, j):
        done, n = j['results'] or [], len(j['requests'])
        ended = j['state'] != 'running'
        counts = dict(processing=0 if ended else n, succeeded=sum(r[3] == 200 for r in done), errored=sum(r[3] != 200 for r in done),
                      expired=len(j.get('unrun', [])) if j['state'] == 'expired' else 0, canceled=len(j.get('unrun', [])) if j['state'] == 'cancelled' else 0)
        return {'id': j['id'], 'type': 'message_batch', 'processing_status': 'ended' if ended else 'in_progress', 'request_counts': counts,
                'created_at': _iso(j['created']), 'expires_at': _iso(j['created'] + 86400), 'ended_at': _iso(j['ended']) if ended else None,
                'cancel_initiated_at': None, 'archived_at': None,
                'results_url': f"{self.url}/v1/messages/batches/{j['id']}/results" if ended else None}

    # --- Gemini
    def ge_upload(self, h, raw, q):
        cmd = h.headers.get('X-Goog-Upload-Command', '')
        with self.lock:
            if 'start' in cmd:
                uid = f'u{next(self.ids)}'; self.files[uid] = b''
                return h.send(200, {}, headers={'X-Goog-Upload-URL': f'{self.url}{h.path.partition("?")[0]}?upload_id={uid}', 'X-Goog-Upload-Status': 'active'})
            uid = dict(p.split('=', 1) for p in q.split('&') if '=' in p)['upload_id']
            self.files[uid] += raw
            if 'finalize' not in cmd: return h.send(200, {}, headers={'X-Goog-Upload-Status': 'active'})
            name = f'files/in-{next(self.ids):04d}'; self.files[name] = self.files.pop(uid); self.uploads.append(name)
        h.send(200, {'file': {'name': name, 'mimeType': 'jsonl', 'sizeBytes': str(len(self.files[name])), 'state': 'ACTIVE'}},
               headers={'X-Goog-Upload-Status': 'final'})
    def ge_download(self, h, raw, q, id):
        if (data := self.files.get(f'files/{id}')) is None: return h.send(404, {'error': {'code': 404, 'message': f'no file {id}', 'status': 'NOT_FOUND'}})
        h.send(200, body=data, ctype='application/octet-stream')
    def ge_create(self, h, raw, q, model):
        src = json.loads(raw)['batch']['inputConfig']
        if 'fileName' in src:
            lines = [json.loads(l) for l in self.files[src['fileName']].decode().splitlines() if l.strip()]
            reqs, kw = [(l['key'], 'gemini', l['request']) for l in lines], {'input_file': src['fileName']}
        else: reqs, kw = [((r.get('metadata') or {}).get('key'), 'gemini', r['request']) for r in src['requests']['requests']], {}
        h.send(200, self._ge_batch(self.new_job(h, 'gemini', reqs, model=model, **kw)))
    def ge_cancel(self, h, raw, q, id):
        if j := self._job(h, id): j['cancel'] = True; h.send(200, {})
    def _ge_batch(self, j):
        st = {'running': 'BATCH_STATE_RUNNING', 'ok': 'BATCH_STATE_SUCCEEDED', 'expired': 'BATCH_STATE_EXPIRED',
              'cancelled': 'BATCH_STATE_CANCELLED', 'invalid': 'BATCH_STATE_FAILED'}[j['state']]
        meta = {'@type': 'type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch', 'model': f"models/{j['model']}",
                'displayName': 'batch', 'state': st, 'createTime': _iso(j['created'])}
        if j['state'] in ('ok', 'cancelled'):
            rows = [({'response': body} if s == 200 else {'error': {'code': {400: 3, 429: 8}.get(s, 13), 'message': body['error']['message']}}, cid)
                    for cid, kind, req, s, body in j['results']]
            if 'input_file' in j:
                name = f"files/out-{j['id']}"
                with self.lock: self.files.setdefault(name, ''.join(json.dumps({'key': c, **r}) + '\n' for r, c in rows).encode())
                meta['output'] = {'responsesFile': name}
            else: meta['output'] = {'inlinedResponses': {'inlinedResponses': [{**r, 'metadata': {'key': c}} for r, c in rows]}}
        return {'name': f"batches/{j['id']}", 'metadata': meta, 'done': j['state'] != 'running'}


if __name__ == '__main__':
    with BatchServer() as s:
        print(f'batch server at {s.url} (OpenAI base_url {s.url}/v1); Ctrl-C to stop', flush=True)
        try: threading.Event().wait()
        except KeyboardInterrupt: pass
