// Extension entry point: build the context, register the commands from one table, and the
// panel serializer that restores the panel after a window reload.
import * as vscode from 'vscode';
import {
  analyzeSelection,
  clearGraphCache,
  compareCompletions,
  comparePromptsCmd,
  downloadModel,
  exportAnalysis,
  openPanel,
  openSample,
  selectModel,
  setHuggingFaceToken,
  toggleOverlay,
  type Cmd,
} from './commands';
import { Ctx } from './ctx';
import { PANEL_VIEW_TYPE } from './panel';

const COMMANDS: Record<string, (ctx: Ctx) => Cmd> = {
  'transformerDynamics.analyzeSelection': analyzeSelection,
  'transformerDynamics.openPanel': openPanel,
  'transformerDynamics.selectModel': selectModel,
  'transformerDynamics.exportAnalysis': exportAnalysis,
  'transformerDynamics.toggleOverlay': toggleOverlay,
  'transformerDynamics.openSample': openSample,
  'transformerDynamics.downloadModel': downloadModel,
  'transformerDynamics.compareCompletions': compareCompletions,
  'transformerDynamics.comparePrompts': comparePromptsCmd,
  'transformerDynamics.setHuggingFaceToken': setHuggingFaceToken,
  'transformerDynamics.clearGraphCache': clearGraphCache,
};

let ctx: Ctx | null = null;

export function activate(context: vscode.ExtensionContext): { ctx: Ctx } {
  const c = new Ctx(context);
  ctx = c;
  context.subscriptions.push(c);
  for (const [id, factory] of Object.entries(COMMANDS)) context.subscriptions.push(vscode.commands.registerCommand(id, factory(c)));
  context.subscriptions.push(
    vscode.window.registerWebviewPanelSerializer(PANEL_VIEW_TYPE, {
      deserializeWebviewPanel: async (panel, state) => c.panel.revive(panel, state),
    }),
  );
  return { ctx: c };
}

export function deactivate(): Promise<void> | undefined {
  const c = ctx;
  ctx = null;
  return c?.engine.dispose();
}
