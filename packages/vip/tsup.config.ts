import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/lifeline-process.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  shims: true,
  target: 'node20',
});
