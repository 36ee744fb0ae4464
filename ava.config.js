export default {
  files: ['test/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
  extensions: { ts: 'module' },
  nodeArguments: ['--conditions=development', '--import=tsx'],
  timeout: '3m',
  // Lab tests create network namespaces and real processes; two at a time keeps a 2-core machine honest.
  concurrency: 2,
  workerThreads: false,
};
