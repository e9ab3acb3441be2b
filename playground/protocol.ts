// The messages between the page (remote.ts) and its model worker (worker.ts).
import type * as lib from '../src/browser.js';

/** The network a job calls: the model alone, or a class-conditional one with its classes and guidance. */
export type DenoiserSpec =
  | { conditional: false }
  | { conditional: true; classes: string | undefined; guidance: number; n: number; batch: number };

type SampleOpts = Omit<lib.SampleOptions, 'start'> & { start?: { step: number; x: Float32Array } };

/** A job for the worker. Images travel as Float32Arrays in the layout of `shape`. */
export type Job =
  | { kind: 'sample'; denoiser: DenoiserSpec; shape: number[]; opts: SampleOpts; stopAfter?: number }
  | {
      kind: 'inpaint';
      denoiser: DenoiserSpec;
      shape: number[];
      known: Float32Array;
      mask: Float32Array;
      opts: lib.RepaintOptions;
    }
  | {
      kind: 'sdedit';
      denoiser: DenoiserSpec;
      shape: number[];
      x0: Float32Array;
      strength: number;
      opts: lib.SampleOptions;
    }
  | {
      kind: 'interpolate';
      denoiser: DenoiserSpec;
      shape: number[];
      a: Float32Array;
      b: Float32Array;
      lambdas: number[];
      t: number;
      seed: number;
    }
  | { kind: 'train'; total: number };

/** One step of a job: where it is, and the images it has (the chain's x_t, the x0 estimate, a training preview). */
export interface JobStep {
  step: number;
  total: number;
  t?: number;
  loss?: number;
  x?: Float32Array;
  predX0?: Float32Array;
  preview?: Float32Array;
}

export type ToWorker =
  | { id: number; type: 'init'; prefer?: 'webgpu' | 'wasm' | 'reference' }
  | {
      id: number;
      type: 'load';
      name: string;
      source: 'shipped' | 'files';
      files: { config: Record<string, unknown>; scheduler?: Record<string, unknown>; weights: Uint8Array };
      paths?: { config: string; scheduler: string };
    }
  | { id: number; type: 'run'; job: Job }
  | { id: number; type: 'stop' };

export type ToPage =
  | { id: number; type: 'ready'; backend: string; adapterInfo: string; fallback: boolean; notes: string[] }
  | { id: number; type: 'step'; step: JobStep }
  | { id: number; type: 'done'; result: Float32Array | null; stopped: boolean; parameterCount?: number }
  | { id: number; type: 'error'; message: string };
