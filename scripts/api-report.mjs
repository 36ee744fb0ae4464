// Writes (or with --check, verifies) the api-extractor report of every public package.
import { Extractor, ExtractorConfig } from '@microsoft/api-extractor';
import { readdirSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const check = process.argv.includes('--check');
let failed = false;
const dirs = ['native', ...readdirSync('packages').map((n) => join('packages', n))];
for (const dir of dirs) {
  const name = dir;
  const file = join(dir, 'api-extractor.json');
  if (!existsSync(file)) continue;
  mkdirSync(join(dir, 'api'), { recursive: true });
  const config = ExtractorConfig.loadFileAndPrepare(file);
  const result = Extractor.invoke(config, { localBuild: !check, showVerboseMessages: false });
  const ok = result.succeeded;
  console.log(`${name}: ${ok ? 'ok' : 'FAILED'}${result.apiReportChanged ? (check ? ' (report out of date: run npm run api)' : ' (report updated)') : ''}`);
  if (!ok) failed = true;
}
process.exit(failed ? 1 : 0);
