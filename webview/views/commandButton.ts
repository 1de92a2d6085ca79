// A button of an empty view that runs one of the extension's commands (the host accepts only
// those in PANEL_COMMANDS). With the panel focused, the commands work on the editor beside it.
import { toolButton } from '../dom';
import type { Host } from '../host';
import type { PanelCommand } from '../../src/shared/protocol';

export function commandButton(host: Host, label: string, iconName: string, title: string, command: PanelCommand): HTMLButtonElement {
  const b = toolButton(label, iconName, title, () => {
    host.request('runCommand', { command }).catch((e: unknown) => host.log('warn', `Panel: ${command} failed: ${String(e)}`));
  });
  b.classList.add('empty-action');
  b.hidden = !host.inVsCode; // a standalone HTML report has no commands
  return b;
}
