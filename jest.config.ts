import type { Config } from 'jest';

const config: Config = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/spec'],
  testMatch: ['**/*.spec.ts'],
  testTimeout: 30_000,
  // Builds dist/ once when it is missing or older than lib/ or examples/: the CLI specs run the compiled program.
  globalSetup: '<rootDir>/spec/helpers/global-setup.ts',
  // Socket tests are I/O bound; two workers match the two cores of the CI machine.
  maxWorkers: 2,
};

export default config;
