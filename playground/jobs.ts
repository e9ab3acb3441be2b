// The playground's generating actions (sampling, finishing or cleaning up a drawing, Fig. 7) run one at a time: each
// disables the others' buttons, enables the Stop button and gives the browser a turn after every step, so that the
// page paints its progress and a press of Stop is seen before the next step. A failure is said once, in the action's
// own message area.
import { noGrad } from '../src/browser.js';
import { $, say } from './ui.js';

/** The buttons that start a generating action (disabled while one runs). */
const ACTIONS = ['sample', 'finish', 'clean', 'fig7'];

export const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Lets the browser paint (an estimate, a status) before a step that may hold the main thread. */
export const nextFrame = () =>
  new Promise<void>((r) => {
    requestAnimationFrame(() => setTimeout(r, 0));
    setTimeout(r, 100); // a hidden tab has no frames
  });

/** A task of its own (not a microtask: the data() of a CPU backend resolves at once), so that input is handled. */
const task = () =>
  new Promise<void>((r) => {
    const c = new MessageChannel();
    c.port1.onmessage = () => {
      c.port1.close();
      r();
    };
    c.port2.postMessage(0);
  });

let lastPaint = 0;
/** A turn of the browser between two steps: input at every step, a frame (painting) at least every 100 ms. */
export async function breathe(): Promise<void> {
  if (performance.now() - lastPaint < 100) return task();
  await nextFrame();
  lastPaint = performance.now();
}

let running: string | null = null,
  runningWhat = '';
let stopAsked = false;

/** The action running now ("sample", "finish", "clean", "fig7"), or null. */
export const runningAction = () => running;
/** Whether Stop was pressed since the running action began. */
export const stopRequested = () => stopAsked;
/** What the Stop button does: the running action ends after its current step. */
export function requestStop(): void {
  if (running) stopAsked = true;
}

/**
 * Runs `body` as the action `name` (its button's id), reporting into the message area `statusId`; an exception ends
 * it with "error: <what> failed: <why>" there. Refused, in words, while another action runs.
 */
export async function runAction(name: string, statusId: string, what: string, body: () => Promise<void>) {
  if (running) return say(statusId, `wait: ${runningWhat} is still running (Stop ends it)`, 'error');
  running = name;
  runningWhat = what;
  stopAsked = false;
  for (const id of ACTIONS) $<HTMLButtonElement>(id).disabled = true;
  $<HTMLButtonElement>('stop').disabled = false;
  document.body.dataset.running = name;
  try {
    await nextFrame();
    await body();
  } catch (e) {
    say(statusId, `error: ${what} failed: ${errText(e)}`, 'error');
    console.error(e);
  } finally {
    running = null;
    stopAsked = false;
    for (const id of ACTIONS) $<HTMLButtonElement>(id).disabled = false;
    $<HTMLButtonElement>('stop').disabled = true;
    delete document.body.dataset.running;
  }
}

/**
 * Steps a sampler's generator (each step without gradients), calling `onStep` after each and giving the browser a
 * turn; returns the generator's result, or null when Stop was pressed (after the step it was pressed in).
 */
export async function drive<S, R>(it: Generator<S, R>, onStep: (s: S) => Promise<void> | void): Promise<R | null> {
  for (;;) {
    const r = noGrad(() => it.next());
    if (r.done) return r.value;
    await onStep(r.value);
    await breathe();
    if (stopAsked) return null;
  }
}

/** Bumps a counter on the page's body (data-NAME), which tests and scripts wait for. */
export function count(name: string): void {
  document.body.dataset[name] = String(Number(document.body.dataset[name] ?? 0) + 1);
}
