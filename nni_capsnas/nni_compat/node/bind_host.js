// Preloaded into NNI's node.js manager (NODE_OPTIONS=--require ...) by nni-capsnas.
// NNI's REST server calls app.listen(port) with no host, which binds every interface.
// This gives net.Server.listen a default host (NNI_CAPSNAS_BIND_HOST, else 127.0.0.1)
// whenever the caller names none; NNI's own files are untouched.
'use strict';
const net = require('net');
const host = process.env.NNI_CAPSNAS_BIND_HOST || '127.0.0.1';
const originalListen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if ((typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first)))
      && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, host);
  } else if (first && typeof first === 'object' && first.port !== undefined && first.host === undefined
             && first.path === undefined) {
    args[0] = Object.assign({}, first, { host });
  }
  return originalListen.apply(this, args);
};
