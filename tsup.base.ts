import { defineConfig, type Options } from 'tsup';

/** The build every package shares: ESM + CJS + types for Node 20, from the given entry files. */
export function packageBuild(entry: string[]): ReturnType<typeof defineConfig> {
  const options: Options = {
    entry,
    format: ['esm', 'cjs'],
    // tsup's dts build passes baseUrl, deprecated in TypeScript 6.
    dts: { compilerOptions: { ignoreDeprecations: '6.0' } },
    sourcemap: true,
    clean: true,
    shims: true,
    target: 'node20',
  };
  return defineConfig(options);
}
