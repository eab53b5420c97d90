/**
 * The router's relay of a streamed answer (services/router/stream.ts) on a real nats-server:
 * the first piece goes at once, the pieces after it within the window go as one message with
 * their text joined, and what is gathered goes out when the request's reply is due. No timings
 * are asserted: every piece after the first is pushed in the same turn, well inside the window,
 * or the clock is a fake one moved by the test.
 */
import { createInbox, type Msg } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { STREAM_HEADER } from "../shared/contract/subjects.ts";
import { RouterStream } from "../services/router/stream.ts";
import { startTestNats, type TestNats } from "./harness/nats.ts";

describe("RouterStream", () => {
  let nats: TestNats;
  beforeAll(async () => {
    nats = await startTestNats({ ownServer: true });
  });
  afterAll(async () => {
    await nats?.close();
  });

  /** The messages the gateway's inbox receives, each as its body. */
  function listen(): { inbox: string; got: unknown[]; headers: (string | undefined)[] } {
    const inbox = createInbox();
    const got: unknown[] = [];
    const headers: (string | undefined)[] = [];
    nats.nc.subscribe(inbox, {
      callback: (_err, m: Msg) => {
        got.push(m.json());
        headers.push(m.headers?.get(STREAM_HEADER));
      },
    });
    return { inbox, got, headers };
  }

  it("sends the first piece at once and gathers the next ones into one message, text joined, tool calls kept apart", async () => {
    const { inbox, got, headers } = listen();
    const s = new RouterStream(nats.nc, inbox);
    expect(s.committed).toBe(false);
    s.deltas([{ content: "Hel" }], "budget/lite");
    expect(s.committed).toBe(true);
    s.deltas([{ content: "lo" }, { content: "," }], "budget/lite");
    s.deltas([{ content: " world" }, { tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "f", arguments: "" } }] }], "budget/lite");
    s.deltas([{ tool_calls: [{ index: 0, function: { arguments: "{}" } }] }], "budget/lite");
    // The reply is due: what is gathered goes first (interactive.ts flushes before replying).
    s.flush();
    await nats.nc.flush();
    expect(got).toEqual([
      { model: "budget/lite", deltas: [{ content: "Hel" }] },
      {
        model: "budget/lite",
        deltas: [
          { content: "lo, world" },
          { tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "f", arguments: "" } }] },
          { tool_calls: [{ index: 0, function: { arguments: "{}" } }] },
        ],
      },
    ]);
    expect(headers).toEqual(["chunk", "chunk"]);
  });

  it("what is gathered goes with the first piece read once the window has passed, or when the provider pauses, after the stall bound", async () => {
    const { inbox, got } = listen();
    const s = new RouterStream(nats.nc, inbox);
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    try {
      s.deltas([{ content: "a" }], "m");
      vi.advanceTimersByTime(4);
      s.deltas([{ content: "b" }], "m");
      vi.advanceTimersByTime(6);
      // 10 ms after the last message: this read takes what was gathered along.
      s.deltas([{ content: "c" }], "m");
      vi.advanceTimersByTime(1);
      s.deltas([{ content: "d" }], "m");
      // No piece follows: the stall bound (15 ms after the last message) sends it, no flush() needed.
      vi.advanceTimersByTime(14);
    } finally {
      vi.useRealTimers();
    }
    await nats.nc.flush();
    expect(got).toEqual([
      { model: "m", deltas: [{ content: "a" }] },
      { model: "m", deltas: [{ content: "bc" }] },
      { model: "m", deltas: [{ content: "d" }] },
    ]);
  });

  it("a closed stream sends nothing of what it had gathered", async () => {
    const { inbox, got } = listen();
    const s = new RouterStream(nats.nc, inbox);
    s.deltas([{ content: "a" }], "budget/lite");
    s.deltas([{ content: "b" }], "budget/lite");
    s.close();
    s.flush();
    await nats.nc.flush();
    expect(got).toEqual([{ model: "budget/lite", deltas: [{ content: "a" }] }]);
  });
});
