// Preloaded into NNI's node.js manager (NODE_OPTIONS=--require ...) by nni-capsnas.
//
// NNI 3.0's training-service adapter (nni_node/training_service/v3/compat.js, class V3asV1)
// queues the parameters (architectures) of new trials and hands them out in the order the
// trial processes *ask* for them, not to the trial each was created for. Two trials started
// together often swap architectures; a trial that dies before asking shifts every later trial
// onto its neighbour's architecture. NNI's database then records the wrong architecture for
// those trials, their end is reported for the wrong model, and NNI's resume re-runs a trial
// with the architecture it recorded.
//
// This binds each queued parameter to the trial created for it, as NNI already does for the
// trials it resumes (allocatedParameters). NNI's files are untouched.
'use strict';
const Module = require('module');

function bindParameters(V3asV1) {
  const submitTrialJob = V3asV1.prototype.submitTrialJob;
  V3asV1.prototype.submitTrialJob = async function (form) {
    if (this.nniCapsnasParameters === undefined) {
      const adapter = this;
      const createTrial = this.v3.createTrial.bind(this.v3);
      this.nniCapsnasParameters = new Map(); // sequence id -> parameter of a trial being created
      this.v3.createTrial = async function (environmentId, command, directory, sequenceId, trialId) {
        const created = await createTrial(environmentId, command, directory, sequenceId, trialId);
        const parameter = adapter.nniCapsnasParameters.get(sequenceId);
        if (created && parameter !== undefined) {
          adapter.nniCapsnasParameters.delete(sequenceId);
          const queued = adapter.parameters.indexOf(parameter);
          if (queued >= 0) {
            adapter.parameters.splice(queued, 1);
            adapter.allocatedParameters.set(created, parameter);
          }
        }
        return created;
      };
    }
    if (form && form.hyperParameters && form.sequenceId !== undefined) {
      this.nniCapsnasParameters.set(form.sequenceId, form.hyperParameters.value);
    }
    return submitTrialJob.call(this, form);
  };
}

const originalLoad = Module._load;
let bound = false;
Module._load = function (...args) {
  const exported = originalLoad.apply(this, args);
  if (!bound && exported && typeof exported.V3asV1 === 'function'
      && typeof exported.V3asV1.prototype.submitTrialJob === 'function') {
    bound = true;
    bindParameters(exported.V3asV1);
  }
  return exported;
};
