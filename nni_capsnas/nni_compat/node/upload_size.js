// Run by nni-capsnas with NNI's own node.js (NODE_PATH = nni_node/node_modules) before a
// search on NNI's remote training service: walks a directory exactly as NNI's
// nni_node/common/tarball.js does when it packs the trial code for the workers (the
// directory's .nniignore honoured, with NNI's own `ignore` package), and prints
// {"files": N, "bytes": B, "complete": bool, "top": {"<first path component>": files}} as JSON.
// The walk stops once it has seen more than MAX_FILES files (NNI refuses more than 2000).
'use strict';
const fs = require('fs');
const path = require('path');
const ignore = require('ignore');

const root = process.argv[2];
const maxFiles = Number(process.argv[3] || 2000);
let patterns;
try {
  patterns = fs.readFileSync(path.join(root, '.nniignore'), { encoding: 'utf8' });
} catch (error) {
  patterns = undefined;
}
const ig = patterns ? ignore().add(patterns) : undefined;
const result = { files: 0, bytes: 0, complete: true, top: {} };

function walk(relDir) {
  for (const entry of fs.readdirSync(path.join(root, relDir))) {
    const relEntry = path.join(relDir, entry);
    const stats = fs.lstatSync(path.join(root, relEntry));
    if (ig && ig.ignores(relEntry + (stats.isDirectory() ? path.sep : ''))) {
      continue;
    }
    if (stats.isDirectory()) {
      if (!walk(relEntry)) {
        return false;
      }
      continue;
    }
    result.files += 1;
    result.bytes += stats.size;
    const top = relEntry.split(path.sep)[0];
    result.top[top] = (result.top[top] || 0) + 1;
    if (result.files > maxFiles) {
      result.complete = false;
      return false;
    }
  }
  return true;
}

walk('');
process.stdout.write(JSON.stringify(result));
