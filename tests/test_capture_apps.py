"""Real apps through capture and route: the openai SDK, openai-agents, LangChain and pydantic-ai running tool loops
(chat completions and the Responses API) against a local upstream that calls tools by rule (llamaduo.fakes)."""
import asyncio, json, os, time
from pathlib import Path
import openai, pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from llamaduo.capture import capture_app
from llamaduo.curate import curate
from llamaduo.data import load_coverage, validate_messages
from llamaduo.fakes import agent_upstream
from llamaduo.files import read_jsonl
from llamaduo.proxy import serving
from llamaduo.route import route_app

os.environ['OPENAI_AGENTS_DISABLE_TRACING'] = '1'   # openai-agents would send traces to api.openai.com
KEY = 'sk-test-QWdlbnRzQXJlRnVuMTIzNDU2Nzg5MA'
WEATHER = {'type': 'function', 'function': {'name': 'get_weather', 'description': 'The weather in a city.',
           'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}}, 'required': ['city']}}}
def weather_of(city): return {'Paris': '21 C and sunny', 'Rome': '25 C', 'Oslo': '3 C, snow'}.get(city, '15 C')

@pytest.fixture
def cap(tmp_path):
    "An agent upstream and a capture proxy in front of it; yields (proxy app, base URL, output folder)."
    with serving(agent_upstream(model='gpt-4o-2024-08-06')) as up_url:
        app = capture_app(up_url + '/v1', tmp_path/'out', tag='agent')
        with serving(app) as url: yield app, url, tmp_path/'out'

def records(app, out, n, timeout=10.0):
    "The captured records once `n` are written."
    t0 = time.monotonic()
    while app.state.stats['records'] < n and time.monotonic() - t0 < timeout: time.sleep(0.01)
    assert app.state.stats['records'] == n, dict(app.state.stats)
    return read_jsonl(out/'captured.jsonl')

def no_key_on_disk(d: Path):
    text = ''.join(p.read_text(errors='replace') for p in d.rglob('*') if p.is_file())
    assert KEY not in text and 'sk-test-' not in text

def sdk(url, **kw): return openai.OpenAI(base_url=url + '/v1', api_key=KEY, max_retries=0, **kw)

def test_sdk_tool_loop_keeps_tools_calls_and_results(cap):
    app, url, out = cap
    client = sdk(url)
    msgs = [{'role': 'system', 'content': 'You report the weather.'},
            {'role': 'user', 'content': 'What is the weather in Paris and Rome?'}]
    r = client.chat.completions.create(model='gpt-4o', messages=msgs, tools=[WEATHER], tool_choice='auto')
    calls = r.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments) for c in calls] == [{'city': 'Paris'}, {'city': 'Rome'}]   # parallel
    msgs.append(r.choices[0].message.model_dump(exclude_none=True))
    msgs += [{'role': 'tool', 'tool_call_id': c.id, 'content': weather_of(json.loads(c.function.arguments)['city'])}
             for c in calls]
    stream = client.chat.completions.create(model='gpt-4o', messages=msgs, tools=[WEATHER], stream=True,
                                            stream_options={'include_usage': True})
    final = ''.join(ch.choices[0].delta.content or '' for ch in stream if ch.choices)
    assert final == 'From the tools: 21 C and sunny; 25 C.'
    first, second = records(app, out, 2)
    assert first['tools'] == [WEATHER] and first['tool_choice'] == 'auto'
    assert first['messages'][-1] == {'role': 'assistant', 'content': None, 'tool_calls': [
        {'id': c.id, 'type': 'function', 'function': {'name': 'get_weather', 'arguments': c.function.arguments}}
        for c in calls]} and first['finish_reason'] == 'tool_calls'
    assert [m['role'] for m in second['messages']] == ['system', 'user', 'assistant', 'tool', 'tool', 'assistant']
    assert second['messages'][3] == {'role': 'tool', 'content': '21 C and sunny', 'tool_call_id': calls[0].id}
    assert second['messages'][-1]['content'] == final and second['usage']['total_tokens'] > 0
    loaded = load_coverage(str(out))[None]
    assert [r['messages'] for r in loaded] == [first['messages'], second['messages']] and loaded[0]['tools'] == [WEATHER]
    no_key_on_disk(out)

def test_n_choices_and_response_format_are_kept(cap):
    app, url, out = cap
    fmt = {'type': 'json_schema', 'json_schema': {'name': 'answer', 'schema': {'type': 'object'}}}
    r = sdk(url).chat.completions.create(model='gpt-4o', n=3, response_format=fmt,
                                         messages=[{'role': 'user', 'content': 'Say hi'}])
    assert len(r.choices) == 3
    rec, = records(app, out, 1)
    assert rec['messages'][-1]['content'] == 'echo: Say hi' and rec['response_format'] == fmt
    assert [a['content'] for a in rec['alternatives']] == ['echo: Say hi (choice 2)', 'echo: Say hi (choice 3)']

def test_responses_api_plain_streamed_and_chained(cap):
    app, url, out = cap
    client = sdk(url)
    tools = [{'type': 'function', **WEATHER['function']}]
    r1 = client.responses.create(model='gpt-4o', instructions='You report the weather.', input='Weather in Oslo?',
                                 tools=tools)
    call = r1.output[0]
    assert (call.type, call.name, json.loads(call.arguments)) == ('function_call', 'get_weather', {'city': 'Oslo'})
    records(app, out, 1)    # the follow-up is finished with the turns of this record
    with client.responses.stream(model='gpt-4o', instructions='You report the weather.', previous_response_id=r1.id,
                                 tools=tools, input=[{'type': 'function_call_output', 'call_id': call.call_id,
                                                      'output': weather_of('Oslo')}]) as s:
        text = s.get_final_response().output_text
    assert text == 'From the tools: 3 C, snow.'
    first, second = records(app, out, 2)
    assert first['tools'][0]['function']['name'] == 'get_weather' and first['response_id'] == r1.id
    assert second['messages'] == [{'role': 'system', 'content': 'You report the weather.'},
                                  {'role': 'user', 'content': 'Weather in Oslo?'},
                                  {'role': 'assistant', 'content': None, 'tool_calls': [
                                      {'id': call.call_id, 'type': 'function',
                                       'function': {'name': 'get_weather', 'arguments': call.arguments}}]},
                                  {'role': 'tool', 'tool_call_id': call.call_id, 'content': '3 C, snow'},
                                  {'role': 'assistant', 'content': text}]
    assert validate_messages(second['messages']) is None and 'not recorded: /v1/responses' not in app.state.stats
    no_key_on_disk(out)

@pytest.mark.parametrize('api', ['responses', 'chat'])
def test_openai_agents_app_is_captured_end_to_end(cap, api):
    from agents import Agent, OpenAIChatCompletionsModel, OpenAIResponsesModel, Runner, function_tool
    app, url, out = cap
    @function_tool
    def get_weather(city: str) -> str:
        "The weather in a city."
        return weather_of(city)
    client = openai.AsyncOpenAI(base_url=url + '/v1', api_key=KEY, max_retries=0)
    model = (OpenAIResponsesModel if api == 'responses' else OpenAIChatCompletionsModel)(model='gpt-4o',
                                                                                          openai_client=client)
    agent = Agent(name='weather', instructions='You report the weather.', tools=[get_weather], model=model)
    result = Runner.run_sync(agent, 'What is the weather in Paris?')
    assert result.final_output == 'From the tools: 21 C and sunny.'
    first, second = records(app, out, 2)
    assert first['messages'][-1]['tool_calls'][0]['function']['name'] == 'get_weather'
    assert [m['role'] for m in second['messages']] == ['system', 'user', 'assistant', 'tool', 'assistant']
    assert second['messages'][3]['content'] == '21 C and sunny' and second['tools'][0]['function']['name'] == 'get_weather'
    assert len(load_coverage(str(out))[None]) == 2
    no_key_on_disk(out)

def test_langchain_bind_tools_loop_is_captured(cap):
    from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    app, url, out = cap
    @tool
    def get_weather(city: str) -> str:
        "The weather in a city."
        return weather_of(city)
    llm = ChatOpenAI(model='gpt-4o', base_url=url + '/v1', api_key=KEY, max_retries=0).bind_tools([get_weather])
    msgs = [SystemMessage('You report the weather.'), HumanMessage('Weather in Rome?')]
    ai = llm.invoke(msgs)
    assert ai.tool_calls[0]['args'] == {'city': 'Rome'}
    msgs += [ai] + [ToolMessage(get_weather.invoke(c['args']), tool_call_id=c['id']) for c in ai.tool_calls]
    assert llm.invoke(msgs).content == 'From the tools: 25 C.'
    first, second = records(app, out, 2)
    assert first['tools'][0]['function']['name'] == 'get_weather'
    assert second['messages'][2]['tool_calls'][0]['id'] == second['messages'][3]['tool_call_id']
    no_key_on_disk(out)

def test_pydantic_ai_tool_run_is_captured(cap):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    app, url, out = cap
    agent = Agent(OpenAIChatModel('gpt-4o', provider=OpenAIProvider(base_url=url + '/v1', api_key=KEY)),
                  system_prompt='You report the weather.')
    @agent.tool_plain
    def get_weather(city: str) -> str:
        "The weather in a city."
        return weather_of(city)
    assert agent.run_sync('Weather in Oslo?').output == 'From the tools: 3 C, snow.'
    first, second = records(app, out, 2)
    assert json.loads(first['messages'][-1]['tool_calls'][0]['function']['arguments']) == {'city': 'Oslo'}
    assert [m['role'] for m in second['messages']] == ['system', 'user', 'assistant', 'tool', 'assistant']
    no_key_on_disk(out)

def test_captured_tool_conversations_all_survive_curate(cap, tmp_path):
    "Ten weather chats under one long system prompt, each asking for other cities, and one true copy."
    app, url, out = cap
    client = sdk(url)
    system = ' '.join(f'Rule {i}: answer about the weather politely, name the city and the temperature.'
                      for i in range(30))
    asks = ['Should we pack an umbrella for our trip to Paris tomorrow?', 'Is it warm enough to swim in Rome?',
            'My flight lands in Oslo tonight, how cold will it be?', 'Any chance of rain during the Lima marathon?',
            'Will the heat in Cairo be bad for a walking tour?', 'Do cherry blossoms in Tokyo need sunshine today?',
            'Is Quito foggy in the mornings this week?', 'A scooter ride in Hanoi later: storms expected?',
            'Windy on the beach in Dakar this afternoon?', 'Can we barbecue outside in Perth on Saturday?']
    cities = ['Paris', 'Rome', 'Oslo', 'Lima', 'Cairo', 'Tokyo', 'Quito', 'Hanoi', 'Dakar', 'Perth']
    for q in asks + [asks[0].replace('?', ' ?')]:   # the last: a copy of the first, spaced differently
        client.chat.completions.create(model='gpt-4o', tools=[WEATHER], messages=[
            {'role': 'system', 'content': system}, {'role': 'user', 'content': q}])
    records(app, out, 11)
    rep = curate(str(out), out=str(tmp_path/'cur'), quiet=True)
    kept = read_jsonl(tmp_path/'cur'/'kept.jsonl')
    assert rep['kept'] == 10 and len(kept) == 10, rep['stages']
    assert {json.loads(r['messages'][-1]['tool_calls'][0]['function']['arguments'])['city'] for r in kept} == set(cities)
    assert all(r['tools'] == [WEATHER] for r in kept)

def slow_once_upstream():
    "Answers the first time a body is seen after 2 s, at once afterwards (an SDK's retry is then answered)."
    app, seen = FastAPI(), set()
    @app.post('/v1/chat/completions')
    async def chat(request: Request):
        raw = await request.body()
        if raw not in seen:
            seen.add(raw)
            await asyncio.sleep(2)
        text = 'answer to ' + json.loads(raw)['messages'][-1]['content']
        return JSONResponse({'id': 'c', 'object': 'chat.completion', 'created': 0, 'model': 'm', 'choices': [
            {'index': 0, 'message': {'role': 'assistant', 'content': text}, 'finish_reason': 'stop'}]})
    return app

@pytest.mark.parametrize('stream', [False, True])
def test_an_answer_the_client_never_got_is_not_recorded_and_a_retry_is_recorded_once(tmp_path, stream):
    with serving(slow_once_upstream()) as up_url:
        app = capture_app(up_url + '/v1', tmp_path/'out')
        with serving(app) as url:
            with pytest.raises(openai.APITimeoutError):   # the client gives up; the upstream answers later
                sdk(url, timeout=0.5).chat.completions.create(model='m', stream=stream,
                                                              messages=[{'role': 'user', 'content': 'first'}])
            r = openai.OpenAI(base_url=url + '/v1', api_key=KEY, max_retries=2, timeout=1.0).chat.completions.create(
                model='m', messages=[{'role': 'user', 'content': 'second'}])   # timed out once, answered on retry
            assert r.choices[0].message.content == 'answer to second'
            t0 = time.monotonic()
            while app.state.stats['skipped: client_gone'] < 2 and time.monotonic() - t0 < 10: time.sleep(0.05)
            recs = records(app, tmp_path/'out', 1)
    assert app.state.stats['skipped: client_gone'] == 2, dict(app.state.stats)
    assert [r['messages'][0]['content'] for r in recs] == ['second']

def test_route_keeps_a_tool_loop_on_one_side(tmp_path):
    "Through route at share 0.5, each conversation's tool call and its follow-up are answered by the same side."
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI
    with serving(agent_upstream(model='local-model')) as loc, serving(agent_upstream(model='service-model')) as svc:
        with serving(route_app(loc + '/v1', svc + '/v1', share=0.5)) as url:
            llm = ChatOpenAI(model='gpt-4o', base_url=url + '/v1', api_key=KEY, max_retries=0).bind_tools([WEATHER])
            sides = []
            for i in range(16):
                msgs = [HumanMessage(f'Conversation {i}: the weather in Paris?')]
                ai = llm.invoke(msgs)
                msgs += [ai, ToolMessage('21 C', tool_call_id=ai.tool_calls[0]['id'])]
                end = llm.invoke(msgs)
                sides.append((ai.response_metadata['model_name'], end.response_metadata['model_name']))
    assert all(a == b for a, b in sides), sides
    assert {a for a, _ in sides} == {'local-model', 'service-model'}
