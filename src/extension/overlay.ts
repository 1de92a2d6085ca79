// The editor overlay on the analysed range: a surprisal tint per token (theme-aware) and a
// hover with the model's top-k next-token predictions.
import * as vscode from 'vscode';
import type { AnalysisPayload } from '../shared/protocol';
import { BUCKET_COUNT, DIFF_BUCKET_COUNT, hoverMarkdown, overlayDiffTokens, overlayTokens, tokenAtOffset } from '../shared/overlay';

// Orange-to-red ramp; alpha grows with surprisal. Light and dark variants keep contrast.
const LIGHT = [
  'rgba(255,170,0,0.10)',
  'rgba(255,160,0,0.20)',
  'rgba(255,140,0,0.30)',
  'rgba(255,100,0,0.38)',
  'rgba(240,60,0,0.45)',
  'rgba(220,0,0,0.50)',
];
const DARK = [
  'rgba(255,190,60,0.10)',
  'rgba(255,170,50,0.18)',
  'rgba(255,150,40,0.27)',
  'rgba(255,120,40,0.35)',
  'rgba(255,80,40,0.43)',
  'rgba(255,40,40,0.50)',
];

// What-if difference (shown run − run compared with): more surprising in red, less in teal,
// alpha growing with |Δ bits| (DIFF_BUCKETS).
const MORE = ['rgba(230,40,40,0.14)', 'rgba(230,40,40,0.26)', 'rgba(230,40,40,0.38)', 'rgba(230,40,40,0.52)'];
const LESS = ['rgba(0,150,170,0.14)', 'rgba(0,150,170,0.26)', 'rgba(0,150,170,0.38)', 'rgba(0,150,170,0.52)'];
const MORE_DARK = ['rgba(255,80,80,0.16)', 'rgba(255,80,80,0.28)', 'rgba(255,80,80,0.40)', 'rgba(255,80,80,0.54)'];
const LESS_DARK = ['rgba(60,200,220,0.16)', 'rgba(60,200,220,0.28)', 'rgba(60,200,220,0.40)', 'rgba(60,200,220,0.54)'];

// Soft clusters of the encoding walk: a few distinct hues, underlined so they combine with the tint.
const CLUSTER_COLORS = ['#3b82f6', '#f59e0b', '#10b981', '#ef4444', '#8b5cf6', '#06b6d4', '#ec4899', '#84cc16'];

export class Overlay implements vscode.Disposable {
  private readonly types: vscode.TextEditorDecorationType[];
  private readonly clusterTypes = CLUSTER_COLORS.map((c) =>
    vscode.window.createTextEditorDecorationType({
      borderStyle: 'none none solid none',
      borderWidth: '0 0 2px 0',
      borderColor: c,
      rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
    }),
  );
  private clusterLabels: number[] | null = null;
  private readonly disposables: vscode.Disposable[] = [];
  private payload: AnalysisPayload | null = null;
  /** What-if: tint by the change of surprisal against this run (same tokens) instead. */
  private base: AnalysisPayload | null = null;
  private readonly diffTypes: { more: vscode.TextEditorDecorationType[]; less: vscode.TextEditorDecorationType[] };
  private enabled: boolean;

  constructor(enabled: boolean) {
    this.enabled = enabled;
    this.types = Array.from({ length: BUCKET_COUNT }, (_, b) =>
      vscode.window.createTextEditorDecorationType({
        light: { backgroundColor: LIGHT[b] },
        dark: { backgroundColor: DARK[b] },
        borderRadius: '2px',
        rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
      }),
    );
    const diffType = (light: string, dark: string) =>
      vscode.window.createTextEditorDecorationType({
        light: { backgroundColor: light },
        dark: { backgroundColor: dark },
        borderRadius: '2px',
        rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
      });
    this.diffTypes = {
      more: Array.from({ length: DIFF_BUCKET_COUNT }, (_, b) => diffType(MORE[b]!, MORE_DARK[b]!)),
      less: Array.from({ length: DIFF_BUCKET_COUNT }, (_, b) => diffType(LESS[b]!, LESS_DARK[b]!)),
    };
    this.disposables.push(
      vscode.languages.registerHoverProvider('*', { provideHover: (doc, pos) => this.hover(doc, pos) }),
      vscode.window.onDidChangeVisibleTextEditors(() => this.render()),
      vscode.workspace.onDidChangeTextDocument((e) => {
        // Edits invalidate the offsets: drop the overlay of that document.
        if (this.payload?.source && e.document.uri.toString() === this.payload.source.uri && e.contentChanges.length > 0) this.clear();
      }),
    );
  }

  get current(): AnalysisPayload | null {
    return this.payload;
  }

  /** Tints the run's tokens by surprisal, or by its change against `base` (what-if: the same tokens). */
  show(payload: AnalysisPayload, base: AnalysisPayload | null = null): void {
    this.payload = payload;
    this.base = base && base.tokens.length === payload.tokens.length ? base : null;
    this.render();
  }

  setEnabled(on: boolean): void {
    this.enabled = on;
    this.render();
  }

  clear(): void {
    this.payload = null;
    this.base = null;
    this.clusterLabels = null;
    this.render();
  }

  /** Coloured spans for soft clusters (a label per position), or none. */
  showClusters(labels: number[] | null): void {
    this.clusterLabels = labels;
    this.render();
  }

  /** The token index at an editor position of the analysed document, if any. */
  tokenAt(doc: vscode.TextDocument, pos: vscode.Position): number | null {
    const p = this.payload;
    if (!p?.source || doc.uri.toString() !== p.source.uri) return null;
    return tokenAtOffset(p, doc.offsetAt(pos));
  }

  /** Editor range of token j. */
  rangeOf(doc: vscode.TextDocument, j: number): vscode.Range | null {
    const p = this.payload;
    const t = p?.tokens[j];
    if (!p?.source || !t) return null;
    const start = Math.max(t.start, Math.min(t.end, t.start));
    return new vscode.Range(doc.positionAt(p.source.offset + start), doc.positionAt(p.source.offset + t.end));
  }

  private render(): void {
    const p = this.payload;
    for (const editor of vscode.window.visibleTextEditors) {
      const mine = this.enabled && p?.source && editor.document.uri.toString() === p.source.uri;
      const buckets: vscode.Range[][] = Array.from({ length: BUCKET_COUNT }, () => []);
      const more: vscode.Range[][] = Array.from({ length: DIFF_BUCKET_COUNT }, () => []);
      const less: vscode.Range[][] = Array.from({ length: DIFF_BUCKET_COUNT }, () => []);
      const range = (t: { start: number; end: number }) =>
        new vscode.Range(editor.document.positionAt(t.start), editor.document.positionAt(t.end));
      if (mine && p && this.base) {
        for (const t of overlayDiffTokens(p, this.base)) if (t.sign !== 0) (t.sign > 0 ? more : less)[t.bucket]!.push(range(t));
      } else if (mine && p) {
        for (const t of overlayTokens(p)) if (t.bucket >= 0) buckets[t.bucket]!.push(range(t));
      }
      this.types.forEach((type, b) => editor.setDecorations(type, buckets[b]!));
      this.diffTypes.more.forEach((type, b) => editor.setDecorations(type, more[b]!));
      this.diffTypes.less.forEach((type, b) => editor.setDecorations(type, less[b]!));
      const clusters: vscode.Range[][] = CLUSTER_COLORS.map(() => []);
      if (p?.source && this.clusterLabels && editor.document.uri.toString() === p.source.uri) {
        for (const t of overlayTokens(p)) {
          const label = this.clusterLabels[t.index];
          if (label === undefined) continue;
          clusters[label % CLUSTER_COLORS.length]!.push(
            new vscode.Range(editor.document.positionAt(t.start), editor.document.positionAt(t.end)),
          );
        }
      }
      this.clusterTypes.forEach((type, c) => editor.setDecorations(type, clusters[c]!));
    }
  }

  private hover(doc: vscode.TextDocument, pos: vscode.Position): vscode.Hover | null {
    if (!this.enabled || !this.payload) return null;
    const j = this.tokenAt(doc, pos);
    if (j === null) return null;
    const md = new vscode.MarkdownString(hoverMarkdown(this.payload, j, this.base));
    md.isTrusted = false;
    md.supportHtml = false;
    return new vscode.Hover(md, this.rangeOf(doc, j) ?? undefined);
  }

  dispose(): void {
    this.types.forEach((t) => t.dispose());
    [...this.diffTypes.more, ...this.diffTypes.less].forEach((t) => t.dispose());
    this.clusterTypes.forEach((t) => t.dispose());
    this.disposables.forEach((d) => d.dispose());
  }
}
