// The official `openai` Node.js SDK as a test client: one chat completion, reported as JSON.
//
//   node client.mjs <base_url> <model> <mode> [api_key]
//
// mode: `stream` (chat.completions.stream() + finalChatCompletion()), `create_stream`
// (create({stream: true}) iterated), `complete` (create() not streamed).
// Environment: LW_BODY (JSON merged into the request body), LW_HEADERS (JSON of extra request
// headers), LW_TIMEOUT_MS (the SDK's request timeout), LW_MAX_RETRIES (default 0).
//
// Prints ONE JSON object: {text, chunks, final, tool_calls, finish_reason, error}. An SDK error
// (HTTP status, connection, timeout, a mid-stream `data: {"error": ...}` frame) is reported in
// `error` with what was received before it, and the exit code is 0: only a bug here exits
// non-zero, so the Python side can tell "the server misbehaved" from "the harness broke".

import OpenAI, { OpenAIError } from 'openai';

const MODES = new Set(['stream', 'create_stream', 'complete']);

function fromEnv(name, fallback) {
  const raw = process.env[name];
  return raw ? JSON.parse(raw) : fallback;
}

function requestBody(model) {
  const extra = fromEnv('LW_BODY', {});
  return { messages: [{ role: 'user', content: 'Hello' }], ...extra, model };
}

// Tool calls folded by index, as the SDK's own stream helper does.
function foldToolCalls(calls, deltas) {
  for (const tc of deltas ?? []) {
    const index = tc.index ?? 0;
    const call = (calls[index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } });
    call.id ||= tc.id ?? '';
    call.function.name ||= tc.function?.name ?? '';
    call.function.arguments += tc.function?.arguments ?? '';
  }
}

async function collectChunks(stream, result) {
  const calls = [];
  for await (const chunk of stream) {
    result.chunks.push(chunk);
    const choice = chunk.choices?.[0];
    if (!choice) continue;
    result.text += choice.delta?.content ?? '';
    foldToolCalls(calls, choice.delta?.tool_calls);
    result.finish_reason = choice.finish_reason ?? result.finish_reason;
  }
  result.tool_calls = calls.filter(Boolean);
}

function takeCompletion(completion, result) {
  const choice = completion.choices?.[0];
  result.final = completion;
  result.tool_calls = choice?.message?.tool_calls ?? [];
  result.finish_reason = choice?.finish_reason ?? null;
}

async function run(client, mode, body, result) {
  if (mode === 'stream') {
    const stream = client.chat.completions.stream({ ...body, stream: true });
    await collectChunks(stream, result);
    takeCompletion(await stream.finalChatCompletion(), result);
  } else if (mode === 'create_stream') {
    const stream = await client.chat.completions.create({ ...body, stream: true });
    await collectChunks(stream, result);
  } else {
    const completion = await client.chat.completions.create({ ...body, stream: false });
    result.text = completion.choices?.[0]?.message?.content ?? '';
    takeCompletion(completion, result);
  }
}

function describe(err) {
  return {
    name: err.constructor?.name ?? err.name,
    message: err.message,
    status: err.status ?? null,
    code: err.code ?? null,
    type: err.type ?? null,
  };
}

async function main() {
  const [baseURL, model, mode, apiKey = 'test'] = process.argv.slice(2);
  if (!baseURL || !model || !MODES.has(mode)) {
    throw new Error(`usage: node client.mjs <base_url> <model> <${[...MODES].join('|')}> [api_key]`);
  }
  const client = new OpenAI({
    baseURL,
    apiKey,
    defaultHeaders: fromEnv('LW_HEADERS', {}),
    timeout: Number(process.env.LW_TIMEOUT_MS || 20000),
    maxRetries: Number(process.env.LW_MAX_RETRIES || 0),
  });
  const result = { text: '', chunks: [], final: null, tool_calls: [], finish_reason: null, error: null };
  try {
    await run(client, mode, requestBody(model), result);
  } catch (err) {
    if (!(err instanceof OpenAIError)) throw err;
    result.error = describe(err);
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

await main();
