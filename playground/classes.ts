// The class picker and the guidance slider of a class-conditional model (its config has num_class_embeds): which class
// every action of the page draws, and classifier-free guidance (Ho & Salimans 2022: eps = eps_null + w (eps_class -
// eps_null), both halves in one batched network call; w = 1 is the plain conditional model). Guidance needs the null
// class that config.json's ddpm_null_class names; without one only w = 1 is offered.
import * as lib from '../src/browser.js';
import type { Loaded } from './models.js';
import type { DenoiserSpec } from './protocol.js';
import { $, say } from './ui.js';

const FASHION = ['T-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'boot'];
const CIFAR = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

/** The name of class k of a model: the digit, or the Fashion-MNIST / CIFAR-10 class when the model's name says so. */
function className(m: Loaded, k: number, K: number): string {
  const names = K === 10 ? (/fashion/i.test(m.name) ? FASHION : /cifar/i.test(m.name) ? CIFAR : null) : null;
  return names ? `${k} (${names[k]})` : String(k);
}

const pick = () => $<HTMLSelectElement>('classPick');
const slider = () => $<HTMLInputElement>('guidance');

/** The guidance scale the slider shows. */
export const guidance = () => Number(slider().value);

function showGuidance(): void {
  $('guidanceVal').textContent = `w = ${guidance()}`;
}

/** Why the page cannot choose this conditional model's class, or null. */
function unusable(m: Loaded): string | null {
  if (m.cfg.class_embed_type === 'identity')
    return 'this model takes class embeddings, not classes (class_embed_type "identity")';
  if (!lib.modelClassCount(m.cfg)) return 'this model does not say how many classes it has (num_class_embeds is null)';
  return null;
}

/** Shows the picker for a class-conditional model (filled with its classes) and hides it for any other. */
export function showClasses(m: Loaded): void {
  const cond = lib.isClassConditional(m.cfg);
  $('classBox').hidden = !cond;
  document.body.dataset.conditional = cond ? '1' : '0';
  say('classMsg', '');
  if (!cond) return;
  const K = lib.modelClassCount(m.cfg),
    p = pick(),
    before = p.value;
  p.length = 0;
  p.add(new Option(`any (every class in turn, 0 to ${K - 1})`, 'any'));
  for (let k = 0; k < K; k++) p.add(new Option(className(m, k, K), String(k)));
  p.value = [...p.options].some((o) => o.value === before) ? before : 'any';
  const nul = m.cfg.ddpm_null_class ?? null;
  slider().disabled = nul === null;
  if (nul === null) slider().value = '1';
  $('classNote').textContent =
    nul === null
      ? 'this model has no null class (ddpm_null_class in its config.json; it was trained without --cond-drop), and ' +
        'guidance needs one: w = 1, the plain conditional model'
      : `w = 1: the plain conditional model; 0: the unconditional one (the null class, ${nul}); above 1: more like ` +
        'the class, less varied (any w but 0 and 1 runs the network on twice the images)';
  const why = unusable(m);
  p.disabled = why !== null;
  if (why) say('classMsg', `${why}: the page cannot draw from it`, 'error');
  showGuidance();
}

export function wireClasses(onChange: () => void): void {
  slider().oninput = () => {
    showGuidance();
    onChange();
  };
  pick().onchange = onChange;
}

/**
 * The network as the actions call it (built in the model worker), for a batch of B images: the model itself for an
 * unconditional model; else the chosen class (or every class of the run's n images in turn) guided with the slider's
 * w. `one`: all images of the run take one class (the chosen one; for "any", class `one` modulo the classes).
 */
export function denoiserFor(m: Loaded, n: number, one?: number, B = n): DenoiserSpec {
  if (!lib.isClassConditional(m.cfg)) return { conditional: false };
  const why = unusable(m);
  if (why) throw new Error(why);
  const classes =
    pick().value === 'any' ? (one === undefined ? undefined : String(one % lib.modelClassCount(m.cfg))) : pick().value;
  return { conditional: true, classes, guidance: guidance(), n, batch: B };
}

/** Images the network sees per image asked for: 2 under guidance (w = 0 is the null class alone, w = 1 the class). */
export const batchFactor = (m: Loaded) =>
  lib.isClassConditional(m.cfg) && guidance() !== 1 && guidance() !== 0 ? 2 : 1;

/** ", class 3, guidance w = 2" (or ", classes 0 to 9 in turn, ..."): the class choice in words; '' without one. */
export function classWords(m: Loaded, one?: number): string {
  if (!lib.isClassConditional(m.cfg)) return '';
  const K = lib.modelClassCount(m.cfg);
  const which =
    pick().value !== 'any'
      ? `class ${pick().value}`
      : one === undefined
        ? `classes 0 to ${K - 1} in turn`
        : `class ${one % K}`;
  return `, ${which}, guidance w = ${guidance()}`;
}
