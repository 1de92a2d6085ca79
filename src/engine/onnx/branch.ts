// A subgraph of an `If` node, built with the same op-level API as a graph, so the code that
// writes a transformer block (graph/forward.ts) can write it into a branch unchanged.
// Initializers and constants go to the outer graph (onnxruntime lets a branch read outer-scope
// values by name, so the weights exist once); value names come from the outer graph's name
// space. Hook outputs the block code declares stay inside the branch: only `branchOutput`
// makes a value an output of the branch.
import type { onnx } from 'onnx-proto';
import { GraphBuilder, valueInfo, type Dim, type ElemType, type ExternalRef } from './builder';

export class BranchBuilder extends GraphBuilder {
  private readonly branchOutputs: onnx.IValueInfoProto[] = [];

  constructor(
    private readonly outer: GraphBuilder,
    name: string,
  ) {
    super(name, null, outer.halfWeights);
  }

  override get root(): GraphBuilder {
    return this.outer.root;
  }

  /** Outer values keep the names the outer graph gave them (renamed graph outputs included). */
  override resolve(value: string): string {
    return this.outer.resolve(super.resolve(value));
  }

  override fresh(prefix: string): string {
    return this.outer.fresh(prefix);
  }

  override input(): string {
    throw new Error(`branch ${this.graphName}: a branch takes no inputs (it reads outer values by name)`);
  }

  /** A hook output declared by block code: the value stays internal to the branch. */
  override output(): void {}

  /**
   * Makes `value` an output of the branch (through an Identity node: a branch output must be
   * produced inside it, even when it passes an outer value through). Names are unique in the
   * whole model, so two branches never declare the same one.
   */
  branchOutput(prefix: string, value: string, type: ElemType, dims: Dim[]): void {
    const name = this.op('Identity', [value], {}, this.fresh(prefix));
    this.branchOutputs.push(valueInfo(name, type, dims));
  }

  override initializer(name: string, data: Float32Array | BigInt64Array | Int32Array | Uint16Array, dims: number[]): string {
    return this.outer.initializer(name, data, dims);
  }

  override externalInitializer(name: string, type: ElemType, dims: number[], ref: ExternalRef): string {
    return this.outer.externalInitializer(name, type, dims, ref);
  }

  override ints(values: number[], scalar = false): string {
    return this.outer.ints(values, scalar);
  }

  override float(value: number): string {
    return this.outer.float(value);
  }

  /** The branch as a GraphProto for an If node's then_branch / else_branch attribute. */
  graph(): onnx.IGraphProto {
    if (this.branchOutputs.length === 0) throw new Error(`branch ${this.graphName} has no outputs`);
    return { name: this.graphName, node: this.nodes, input: [], output: this.branchOutputs, initializer: [] };
  }
}
