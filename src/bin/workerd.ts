#!/usr/bin/env node
import { main } from '../workerd/main.js';

await main(process.argv.slice(2));
