/**
 * The demo's workload: moderation and classification jobs in wire contract v1, plus a few
 * broken ones, so every path (served, failed over, escalated, dead-lettered) shows up. A third
 * of the jobs are written the way users write them — their own words, no labels listed, no
 * response_format: the task's output contract tells the model what to answer.
 */
const MODERATION_TEXTS = [
  "Have a lovely day, and thanks for the quick delivery!",
  "I will kill you if you post that again.",
  "Buy now!!! Free money, click here to claim your prize.",
  "What a beautiful garden, the roses are stunning this year.",
  "You are a stupid loser and everyone knows it.",
  "Can anyone recommend a good book about sailing?",
  "We should attack their base at dawn, says the game guide.",
  "The meeting moved to 3pm, see you there.",
  "Click here for free money, limited offer, buy now.",
  "This recipe needs two cups of flour and an egg.",
  "Only an idiot would believe that.",
  "Our team won the match yesterday, great effort everyone.",
];

const TICKETS = [
  "I was charged twice for my subscription this month, please refund the billing error.",
  "The app crashes with a technical error every time I open settings.",
  "I cannot log in to my account after resetting my password.",
  "My package has been in shipping for two weeks, where is it?",
  "Do you have a student discount on the billing plan?",
  "Getting a technical timeout when uploading files larger than 1 GB.",
  "Please delete my account and all of its data.",
  "The shipping address on my order is wrong, can you change it?",
  "Just wanted to say the new design looks great.",
  "Invoice shows the wrong VAT number, billing needs to fix it.",
];

export const DEMO_LABELS = ["billing", "technical", "account", "shipping", "other"];

/** How users phrase the same work, with no knowledge of the task's contract. */
const NATURAL_MODERATION = (text: string) => `Is this comment abusive or spam? "${text}"`;
const NATURAL_TICKET = (text: string) => `Which team should handle this ticket? ${text}`;

export interface DemoJob {
  readonly subject: string;
  readonly msgId: string;
  readonly payload: string;
}

/** `jobSubject`: the deployment's job subject of a task (`<namespace>.jobs.<task>` with a namespace). */
export function demoJobs(runId: string, perTask: number, jobSubject: (task: string) => string = (task) => `jobs.${task}`): DemoJob[] {
  const jobs: DemoJob[] = [];
  const add = (task: string, id: string, body: unknown) => jobs.push({ subject: jobSubject(task), msgId: id, payload: typeof body === "string" ? body : JSON.stringify(body) });
  // Interleaved, so each phase of the demo sees both tasks.
  for (let i = 0; i < perTask; i++) {
    const mod = `${runId}-mod-${i}`;
    const natural = i % 3 === 2;
    const modText = MODERATION_TEXTS[i % MODERATION_TEXTS.length]!;
    const ticket = TICKETS[i % TICKETS.length]!;
    if (natural) {
      add("moderation", mod, { id: mod, request: { messages: [{ role: "user", content: NATURAL_MODERATION(modText) }] }, metadata: { demo: runId, tenant: "initech" } });
      const cls = `${runId}-cls-${i}`;
      add("classification", cls, { id: cls, request: { messages: [{ role: "user", content: NATURAL_TICKET(ticket) }] }, metadata: { demo: runId, tenant: "initech" } });
      continue;
    }
    add("moderation", mod, {
      id: mod,
      request: {
        model: "auto",
        messages: [
          { role: "system", content: "You are a content moderation classifier. Reply with a JSON verdict." },
          { role: "user", content: modText },
        ],
        temperature: 0,
        max_tokens: 64,
        response_format: { type: "json_object" },
      },
      metadata: { demo: runId, tenant: i % 2 ? "acme" : "globex" },
    });
    const cls = `${runId}-cls-${i}`;
    add("classification", cls, {
      id: cls,
      request: {
        messages: [
          { role: "system", content: `Classify the support ticket. Labels: ${DEMO_LABELS.join(", ")}` },
          { role: "user", content: ticket },
        ],
        max_tokens: 8,
      },
      metadata: { demo: runId },
    });
  }
  // What a careless producer sends: each must end as a dead letter, not vanish.
  add("moderation", `${runId}-bad-json`, "{\"request\": {\"messages\": [");
  add("moderation", `${runId}-bad-empty`, { id: `${runId}-bad-empty`, request: { messages: [] }, metadata: { demo: runId } });
  add("classification", `${runId}-bad-type`, { id: `${runId}-bad-type`, request: { messages: [{ role: "user", content: 42 }] }, metadata: { demo: runId } });
  add("translation", `${runId}-bad-task`, { id: `${runId}-bad-task`, request: { messages: [{ role: "user", content: "bonjour" }] }, metadata: { demo: runId } });
  return jobs;
}

/**
 * A night's backlog: moderation jobs in users' own words, due `deadline`. The slack lets the
 * router send them through provider batches (the embedded config's `moderation.batch`).
 */
export function backlogJobs(runId: string, n: number, deadline: Date, jobSubject: (task: string) => string = (task) => `jobs.${task}`): DemoJob[] {
  return Array.from({ length: n }, (_, i) => {
    const id = `${runId}-${i}`;
    const text = MODERATION_TEXTS[i % MODERATION_TEXTS.length]!;
    return {
      subject: jobSubject("moderation"),
      msgId: id,
      payload: JSON.stringify({ id, request: { messages: [{ role: "user", content: `Reported comment #${i + 1} from yesterday: ${NATURAL_MODERATION(text)}` }] }, deadline: deadline.toISOString(), metadata: { backlog: runId } }),
    };
  });
}
