// The playground's generating actions (sampling, interpolating, finishing or cleaning up a drawing, Fig. 7) run one at
// a time, in the model worker (remote.ts): each disables the others' buttons and enables the Stop button; the page
// shows every step as it comes back, and Stop ends the job after the step the worker is in. A failure is said once,
// in the action's own message area.
import { type Images, type Step, remote } from './remote.js';
import { $, say } from './ui.js';

/** The buttons that start a generating action (disabled while one runs). */
const ACTIONS = ['sample', 'interp', 'finish', 'clean', 'fig7'];
/** Whether an action's button may be enabled when none runs (interpolation needs samples). */
const usable: Record<string, () => boolean> = {};
export const setUsable = (name: string, f: () => boolean) => (usable[name] = f);
/** Enables the buttons of the actions that may start now. */
export function refreshActions(): void {
  for (const id of ACTIONS)
    $<HTMLButtonElement>(id).disabled = running !== null || loading || !(usable[id]?.() ?? true);
}

let loading = false;
/** A model is loading: no action starts until it has (its settings would be the previous model's). */
export function setLoading(on: boolean): void {
  loading = on;
  refreshActions();
}

/** Before a model loads: the running action stops (the worker ends it after its step), and none starts meanwhile. */
export function beginLoad(what: string): void {
  say('modelStatus', running ? `stopping the running action, then loading ${what}...` : `loading ${what}...`);
  requestStop();
  setLoading(true);
}

export const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Lets the browser paint (an estimate, a status) before a step that may hold the main thread. */
export const nextFrame = () =>
  new Promise<void>((r) => {
    requestAnimationFrame(() => setTimeout(r, 0));
    setTimeout(r, 100); // a hidden tab has no frames
  });

let running: string | null = null,
  runningWhat = '';
let stopAsked = false;

/** The action running now ("sample", "finish", "clean", "fig7"), or null. */
export const runningAction = () => running;
/** Whether Stop was pressed since the running action began. */
export const stopRequested = () => stopAsked;
/** What the Stop button does: the running action ends after its current step. */
export function requestStop(): void {
  if (!running) return;
  stopAsked = true;
  remote.stop(); // the worker hears it while it computes the step after the one on the page
}

/**
 * Runs `body` as the action `name` (its button's id), reporting into the message area `statusId`; an exception ends
 * it with "error: <what> failed: <why>" there. Refused, in words, while another action runs.
 */
export async function runAction(name: string, statusId: string, what: string, body: () => Promise<void>) {
  if (running) return say(statusId, `wait: ${runningWhat} is still running (Stop ends it)`, 'error');
  if (loading) return say(statusId, 'wait: a model is loading', 'error');
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
    refreshActions();
    $<HTMLButtonElement>('stop').disabled = true;
    delete document.body.dataset.running;
  }
}

/**
 * Takes a job's steps as the worker sends them, calling `onStep` after each; returns the job's result, or null when
 * Stop was pressed (the worker ends the job after the step it was in).
 */
export async function drive(it: AsyncGenerator<Step, Images | null>, onStep: (s: Step) => Promise<void> | void) {
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
    await onStep(r.value);
    if (stopAsked) {
      await it.return(null);
      return null;
    }
  }
}

/** Bumps a counter on the page's body (data-NAME), which tests and scripts wait for. */
export function count(name: string): void {
  document.body.dataset[name] = String(Number(document.body.dataset[name] ?? 0) + 1);
}
