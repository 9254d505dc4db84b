// LangChain JS's MotorheadMemory against a Motorhead-compatible URL, unchanged:
//   node motorhead_memory.mjs <base url> <session id>
// Prints what the client saw, as JSON, for tests/test_api_compat_langchain_js.py.
import { MotorheadMemory } from "@langchain/community/memory/motorhead_memory";

const [url, sessionId] = process.argv.slice(2);

const first = new MotorheadMemory({ sessionId, url, timeout: 10000 });
await first.init();
const before = await first.loadMemoryVariables({});
await first.saveContext({ input: "I am Ada." }, { output: "Hello, Ada." });
await first.saveContext({ input: "Who am I?" }, { output: "You are Ada." });

// A new client reads the session back from the server, as after a restart.
const second = new MotorheadMemory({ sessionId, url, timeout: 10000, returnMessages: true });
await second.init();
const after = await second.loadMemoryVariables({});

console.log(
  JSON.stringify({
    before: before.history,
    after: after.history.map((message) => [message._getType(), message.content]),
    context: second.context ?? null,
  }),
);
