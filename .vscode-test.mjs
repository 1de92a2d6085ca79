// @vscode/test-cli configuration for `npm run test:vscode` (desktop VS Code, downloaded).
import { defineConfig } from '@vscode/test-cli';

export default defineConfig({
  files: 'out/test/vscode/**/*.test.js',
  version: '1.100.3',
  mocha: { ui: 'tdd', timeout: 180000 },
  launchArgs: ['--disable-extensions'],
});
