// Preloaded into NNI's node.js manager (NODE_OPTIONS=--require ...) by nni-capsnas.
//
// NNI 3.0's GPU scheduler (nni_node/common/trial_keeper/task_scheduler/scheduler.js, class
// TaskScheduler) refuses a trial that asks for every GPU of the machine:
//     if (gpuNumber >= this.gpus.length) { logger.error(`Only have ... GPUs, requesting ...`); return null; }
// so on a one-GPU machine with trialGpuNumber = 1 (or two GPUs and trialGpuNumber = 2) no trial is
// ever created: NNI's training-service adapter retries every second, forever. The bound NNI meant
// is "more GPUs than the machine has".
//
// This schedules a trial that asks for exactly all GPUs the way NNI schedules any whole number of
// GPUs (the same steps as NNI's own branch for gpuNumber >= 1); every other request goes to NNI's
// code unchanged. NNI's files are untouched.
'use strict';
const Module = require('module');

const patched = Symbol('nni-capsnas: every GPU may be scheduled');

function scheduleEveryGpu(TaskScheduler) {
  const schedule = TaskScheduler.prototype.schedule;
  TaskScheduler.prototype.schedule = async function (experimentId, trialId, gpuNumber, restrictions) {
    const wanted = Math.round(gpuNumber);
    if (!(gpuNumber >= 1) || wanted !== this.gpus.length) {
      return schedule.call(this, experimentId, trialId, gpuNumber, restrictions);
    }
    this.update();  // NNI's schedule() refreshes the GPU state the same way (not awaited)
    const gpus = this.sortGpus(restrictions ?? {});
    if (gpus.length < wanted || gpus[wanted - 1].util > 0) {
      return null;  // some GPU is busy or excluded: NNI asks again later
    }
    const indices = [];
    for (const gpu of gpus.slice(0, wanted)) {
      gpu.util = 1;
      this.trials.push({ gpuIndex: gpu.index, experimentId, trialId, util: 1 });
      indices.push(gpu.index);
    }
    indices.sort((a, b) => a - b);
    return { CUDA_VISIBLE_DEVICES: indices.join(',') };
  };
  TaskScheduler.prototype[patched] = true;
}

const originalLoad = Module._load;
Module._load = function (...args) {
  const exported = originalLoad.apply(this, args);
  const TaskScheduler = exported && exported.TaskScheduler;
  if (typeof TaskScheduler === 'function' && typeof TaskScheduler.prototype.schedule === 'function'
      && typeof TaskScheduler.prototype.sortGpus === 'function' && !TaskScheduler.prototype[patched]) {
    scheduleEveryGpu(TaskScheduler);
  }
  return exported;
};
