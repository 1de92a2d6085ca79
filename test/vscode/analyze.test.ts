// @vscode/test-electron suite (`npm run test:vscode`): the same scenarios as the code-server
// e2e, through the VS Code API, for machines that can download a desktop VS Code.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Ctx } from '../../src/extension/ctx';

const EXTENSION_ID = 'transformer-dynamics.transformer-dynamics';

async function ctx(): Promise<Ctx> {
  const ext = vscode.extensions.getExtension<{ ctx: Ctx }>(EXTENSION_ID);
  assert.ok(ext, 'the extension is installed');
  return (await ext.activate()).ctx;
}

async function until<T>(f: () => T | undefined | null, ms = 120_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 200));
  }
}

suite('Transformer Dynamics', () => {
  test('Analyze Selection fills the panel, the overlay and the status bar', async () => {
    const c = await ctx();
    const model = process.env.TD_TEST_MODEL;
    if (model) await vscode.workspace.getConfiguration('transformerDynamics').update('modelPath', model, vscode.ConfigurationTarget.Global);
    const doc = await vscode.workspace.openTextDocument({
      content: 'Once upon a time, there was a little girl named Lily.\ndef f(x):\n    return x\n',
      language: 'markdown',
    });
    const editor = await vscode.window.showTextDocument(doc);
    editor.selection = new vscode.Selection(0, 0, 0, doc.lineAt(0).text.length);
    await vscode.commands.executeCommand('transformerDynamics.analyzeSelection');
    const last = await until(() => c.last);
    assert.equal(last.payload.text, doc.lineAt(0).text);
    assert.equal(last.payload.lens.rows, last.payload.model.n_layers + 1);
    assert.ok(c.panel.visible, 'the panel is open');
    assert.equal(c.overlay.current?.runId, last.payload.runId, 'the overlay shows this run');
    const hovers = await vscode.commands.executeCommand<vscode.Hover[]>('vscode.executeHoverProvider', doc.uri, new vscode.Position(0, 6));
    assert.ok(hovers.some((h) => h.contents.some((m) => (m as vscode.MarkdownString).value?.includes('predictions for the next token'))));
  });

  test('Export Analysis writes the documented JSON', async () => {
    const c = await ctx();
    assert.ok(c.last, 'an analysis exists');
    const out = path.join(process.env.TMPDIR ?? '/tmp', `td-export-${Date.now()}.json`);
    const orig = vscode.window.showSaveDialog;
    (vscode.window as { showSaveDialog: typeof orig }).showSaveDialog = async () => vscode.Uri.file(out);
    try {
      assert.equal(await c.exportAnalysis('json'), out);
    } finally {
      (vscode.window as { showSaveDialog: typeof orig }).showSaveDialog = orig;
    }
    const json = JSON.parse(Buffer.from(await vscode.workspace.fs.readFile(vscode.Uri.file(out))).toString('utf8'));
    assert.equal(json.tokens.length, c.last.payload.tokens.length);
  });
});
