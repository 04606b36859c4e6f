// Drives a Bulwark gateway with the official npm openai client and prints what
// happened as one JSON object; the Go end-to-end test checks it.
// Env: BULWARK_URL, BULWARK_KEY (may call gpt-4o), PROMPT.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.BULWARK_URL + "/v1", apiKey: process.env.BULWARK_KEY, maxRetries: 0 });
const prompt = process.env.PROMPT;
const out = {};

function header(h, name) {
  if (!h) return "";
  if (typeof h.get === "function") return h.get(name) ?? "";
  return h[name] ?? "";
}

{
  const { data, response } = await client.chat.completions
    .create({ model: "gpt-4o", messages: [{ role: "user", content: prompt }] })
    .withResponse();
  out.nonStream = { requestId: header(response.headers, "x-request-id"), answer: data.choices[0].message.content };
}

{
  const { data: stream, response } = await client.chat.completions
    .create({ model: "gpt-4o", messages: [{ role: "user", content: prompt }], stream: true, stream_options: { include_usage: true } })
    .withResponse();
  let answer = "";
  let chunks = 0;
  let usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.choices?.[0]?.delta?.content) answer += chunk.choices[0].delta.content;
    if (chunk.usage) usage = chunk.usage;
  }
  out.stream = { requestId: header(response.headers, "x-request-id"), answer, chunks, totalTokens: usage?.total_tokens ?? 0 };
}

try {
  await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hello" }] });
  out.denied = { status: 200 };
} catch (err) {
  if (!(err instanceof OpenAI.APIError)) throw err;
  out.denied = { status: err.status, type: err.type ?? err.error?.type, code: err.code ?? err.error?.code, requestId: header(err.headers, "x-request-id") };
}

process.stdout.write(JSON.stringify(out) + "\n");
