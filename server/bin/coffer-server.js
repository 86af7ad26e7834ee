#!/usr/bin/env node
// Committed launcher: it exists before the build, so npm can link the bin at install time.
import '../dist/main.js';
