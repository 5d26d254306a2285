#!/usr/bin/env node
// The command's entry is this committed file rather than dist/cli.js, so that installing a fresh clone can
// link the command before `build` has made dist/ (pnpm warns "Failed to create bin" otherwise).
import '../dist/cli.js';
