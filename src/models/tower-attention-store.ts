/**
 * The tower's attention of a trace, from the encoder's `onAttention` hook until the run is written: each
 * layer's blocks, pass by pass, in a `LayerTapes` store (past a memory budget in an unlinked file), stacked
 * into the layer's `vit_attn` tensor only when the writer asks for it. At 7B sizes the tower's attention is
 * 0.5 GB per pass (CLIP-L/336), five passes for a LLaVA-NeXT image of four tiles.
 */
import { LayerTapes } from "./tape-store.js";

export class TowerAttentionStore {
  private readonly blocks: LayerTapes<{ probs: Float32Array }>;
  /** Store index of each (layer, pass) block. */
  private readonly index = new Map<string, number>();
  private layerCount = 0;

  constructor(memoryBytes?: number) {
    this.blocks = new LayerTapes({ memoryBytes, what: "the tower's attention" });
  }

  /** Layers seen so far (one past the highest). */
  get layers(): number {
    return this.layerCount;
  }

  /** One pass's probabilities of one layer, [H, S, S] (the hook's arguments). */
  add(layer: number, pass: number, probs: Float32Array): void {
    this.index.set(`${layer}:${pass}`, this.blocks.length);
    this.blocks.push({ probs });
    this.layerCount = Math.max(this.layerCount, layer + 1);
  }

  /** Layer l's passes 0 … passes−1 stacked pass-major; the store lets go of them (once per layer). */
  take(layer: number, passes: number): Float32Array {
    const slots = Array.from({ length: passes }, (_, pass) => {
      const i = this.index.get(`${layer}:${pass}`);
      if (i === undefined) throw new Error(`tower attention of layer ${layer}, pass ${pass} missing`);
      return i;
    });
    let out = this.blocks.get(slots[0]).probs;
    if (passes > 1) {
      const block = out.length;
      const stacked = new Float32Array(passes * block);
      stacked.set(out);
      // One block read back at a time: a file-backed block stays only until the next is read.
      slots.slice(1).forEach((i, k) => {
        stacked.set(this.blocks.get(i).probs, (k + 1) * block);
      });
      out = stacked;
    }
    for (const i of slots) this.blocks.release(i);
    return out;
  }

  /** Lets go of every block left and of the file, if one was needed. */
  dispose(): void {
    this.blocks.dispose();
  }
}
