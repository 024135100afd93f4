"""Local HTTP servers speaking the service-LLM protocols, with scripted faults.

One `FakeLLMServer` answers all three protocols on 127.0.0.1 (random free port):
  POST /v1/chat/completions                      OpenAI chat completions (and every compatible server)
  POST /v1/messages                              Anthropic messages
  POST /{version}/models/{model}:generateContent Gemini (google-genai with a base_url)

`server.script` is a list of faults consumed one per request, in arrival order; once empty every request is
answered normally. Faults: 'ok', ('429', retry_after_s), '500', '400', '401', '404', ('timeout', sleep_s),
'malformed' (200 with a non-JSON body), 'truncated' (200 whose body is cut short before the connection closes).
It counts requests, records bodies and headers, and the largest number of requests it saw in flight at once.
"""
import hashlib, json, random, re, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

def _words(s): return len(str(s).split())

def _text_of(content):
    if isinstance(content, str): return content
    return ' '.join(p.get('text', '') for p in content if isinstance(p, dict))

class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a): pass

    def _send(self, code, obj=None, body=None, headers=None):
        body = body if body is not None else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        for k, v in (headers or {}).items(): self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        srv = self.server.owner
        n = int(self.headers.get('Content-Length') or 0)
        raw = self.rfile.read(n)
        try: req = json.loads(raw or b'{}')
        except ValueError: req = {}
        with srv.lock:
            srv.requests.append({'path': self.path, 'body': req, 'headers': dict(self.headers), 't': time.monotonic()})
            fault = srv.next_fault(req, dict(self.headers))
            srv.in_flight += 1; srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            if srv.latency: time.sleep(srv.latency)
            self._answer(req, fault)
        finally:
            with srv.lock: srv.in_flight -= 1

    def _answer(self, req, fault):
        kind, arg = (fault if isinstance(fault, tuple) else (fault, None))
        if kind == '429': return self._send(429, {'error': {'message': 'rate limited', 'type': 'rate_limit_error'}},
                                            headers={'Retry-After': str(arg if arg is not None else 1)})
        if kind == 'unauthorized':   # like some servers, echo the key that was rejected
            return self._send(401, {'error': {'message': f'Incorrect API key provided: {arg}', 'type': 'invalid_request_error', 'code': 'invalid_api_key'}})
        if kind == '500echo':
            return self._send(500, {'error': {'message': f'internal error while serving the request of key {arg}', 'type': 'server_error'}})
        if kind in ('400', '401', '404', '500'):
            code = int(kind)
            return self._send(code, {'error': {'message': f'fake {code}', 'type': 'error', 'code': code, 'status': 'ERROR'}})
        if kind == 'timeout': time.sleep(arg or 5)
        if kind == 'malformed': return self._send(200, body=b'<html>this is not json</html>')
        if kind == 'truncated':
            body = json.dumps(self._reply(req)).encode()
            self.send_response(200); self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body))); self.end_headers()
            self.wfile.write(body[:len(body)//2]); self.wfile.flush()
            self.close_connection = True
            return
        self._send(200, self._reply(req))

    def _reply(self, req):
        p = self.path
        if p.endswith('/chat/completions'):
            msgs = req.get('messages', [])
            text = self.server.owner.answer(_text_of(msgs[-1]['content']) if msgs else '', req)
            tin = sum(_words(_text_of(m['content'])) for m in msgs)
            return {'id': 'chatcmpl-1', 'object': 'chat.completion', 'created': 0, 'model': req.get('model'),
                    'choices': [{'index': 0, 'finish_reason': 'stop', 'message': {'role': 'assistant', 'content': text}}],
                    'usage': {'prompt_tokens': tin, 'completion_tokens': _words(text), 'total_tokens': tin + _words(text)}}
        if p.endswith('/messages'):
            msgs = req.get('messages', [])
            text = self.server.owner.answer(_text_of(msgs[-1]['content']) if msgs else '', req)
            tin = sum(_words(_text_of(m['content'])) for m in msgs) + _words(_text_of(req.get('system', '')))
            return {'id': 'msg_1', 'type': 'message', 'role': 'assistant', 'model': req.get('model'),
                    'content': [{'type': 'text', 'text': text}], 'stop_reason': 'end_turn', 'stop_sequence': None,
                    'usage': {'input_tokens': tin, 'output_tokens': _words(text)}}
        if re.search(r'/models/[^/]+:generateContent$', p):
            cs = req.get('contents', [])
            last = ' '.join(x.get('text', '') for x in cs[-1].get('parts', [])) if cs else ''
            text = self.server.owner.answer(last, req)
            tin = sum(_words(x.get('text', '')) for c in cs for x in c.get('parts', []))
            return {'candidates': [{'content': {'role': 'model', 'parts': [{'text': text}]}, 'finishReason': 'STOP', 'index': 0}],
                    'usageMetadata': {'promptTokenCount': tin, 'candidatesTokenCount': _words(text), 'totalTokenCount': tin + _words(text)},
                    'modelVersion': 'fake'}
        return {'error': 'unknown path ' + p}

class LocalServer:
    "A threaded HTTP server on 127.0.0.1 (a free port) whose `handler` reaches this object as `self.server.owner`; use as a context manager."
    def __init__(self, handler, queue:int=512):
        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), handler, bind_and_activate=False)
        self.httpd.request_queue_size = queue; self.httpd.daemon_threads = True
        self.httpd.server_bind(); self.httpd.server_activate()
        self.httpd.owner = self
        self.httpd.handle_error = lambda *a: None  # clients that gave up (timeouts) break pipes; not our concern
        self.port = self.httpd.server_address[1]
        self.url = f'http://127.0.0.1:{self.port}'

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
        self.thread.start(); return self

    def stop(self): self.httpd.shutdown(); self.httpd.server_close()
    def __enter__(self): return self.start()
    def __exit__(self, *a): self.stop()

class FakeLLMServer(LocalServer):
    "A threaded local server for all three protocols; use as a context manager."
    def __init__(self, latency:float=0.0):
        super().__init__(_Handler)
        self.latency, self.script, self.requests, self.lock = latency, [], [], threading.Lock()
        self.in_flight = self.max_in_flight = 0

    def answer(self, last:str, req:dict)->str:
        "The reply text: an echo of the last message (as JSON when asked for JSON)."
        asked_json = (req.get('response_format') or {}).get('type') == 'json_object' or \
                     (req.get('generationConfig') or {}).get('responseMimeType') == 'application/json'
        return json.dumps({'echo': last}) if asked_json else f'echo: {last}'

    def next_fault(self, req:dict, headers:dict):
        "The fault for this request (called under the lock): the next scripted one, else 'ok'."
        return self.script.pop(0) if self.script else 'ok'

    def reset(self, script=()):
        with self.lock: self.script, self.requests, self.in_flight, self.max_in_flight = list(script), [], 0, 0


class DemoLLMServer(FakeLLMServer):
    """The OpenAI protocol in front of the offline `demo` service LLM (it answers the real judge and synthesis prompts),
    with a required key and injected faults: a share `fault_rate` of requests — chosen by a seeded hash of the body and
    its attempt number — fails with 429 + Retry-After, 500 (its message echoing the caller's key), a hang past the
    client's timeout, a malformed or a truncated body. A wrong key gets a 401 that echoes it. `GET /v1/models/<id>`
    answers the model lookup. `ok_bodies` counts the requests answered 200 (what a user would pay for)."""
    FAULTS = [('429', 0.05), '500echo', ('timeout', 1.5), 'malformed', 'truncated']
    def __init__(self, key:str, fault_rate:float=0.2, models=('fake-gpt',), seed:int=0):
        super().__init__(); self.key, self.fault_rate, self.models, self.seed = key, fault_rate, set(models), seed
        self.attempts, self.ok = {}, 0
    def next_fault(self, req, headers):
        auth = headers.get('Authorization') or headers.get('authorization') or ''
        got = auth.removeprefix('Bearer ').strip()
        if got != self.key: return ('unauthorized', got)
        if self.script: return self.script.pop(0)
        h = hashlib.sha256(json.dumps([req, self.seed], sort_keys=True).encode()).hexdigest()
        n = self.attempts[h] = self.attempts.get(h, 0) + 1
        u = random.Random(f'{h}:{n}').random()
        if u < self.fault_rate:
            f = self.FAULTS[int(u / self.fault_rate * len(self.FAULTS))]
            return ('500echo', got) if f == '500echo' else f
        self.ok += 1
        return 'ok'
    def answer(self, last, req):
        from llamaduo.demo_service import demo_reply
        return demo_reply(req.get('messages', []))

def _do_GET(self):
    srv = self.server.owner
    auth = (self.headers.get('Authorization') or '').removeprefix('Bearer ').strip()
    if getattr(srv, 'key', None) and auth != srv.key:
        return self._send(401, {'error': {'message': f'Incorrect API key provided: {auth}', 'code': 'invalid_api_key'}})
    m = re.match(r'.*/models/([^/?]+)$', self.path)
    if m and m.group(1) in getattr(srv, 'models', {m.group(1)}):
        return self._send(200, {'id': m.group(1), 'object': 'model', 'created': 0, 'owned_by': 'fake'})
    self._send(404, {'error': {'message': f'The model {m.group(1) if m else self.path!r} does not exist', 'code': 'model_not_found'}})
_Handler.do_GET = _do_GET
