#!/usr/bin/env node
import { main } from '../spoold/main.js';

await main(process.argv.slice(2));
