"""Every use of NNI 3.0's private API and every runtime patch of NNI, in one place.

NNI 3.0 (September 2023) is NNI's last release; on a current stack (Python 3.11, PyTorch 2.13+,
Lightning 2.x) some of its behaviour must be corrected, and some of what this project needs
is only reachable through private attributes. Nothing here edits NNI's files: each module
wraps one behaviour, says what NNI does and why it is corrected, and names the test that fails
without it.

=====================================  ===========================================================
module                                 NNI behaviour it corrects or private API it wraps
=====================================  ===========================================================
:mod:`.resume_commands`                the NAS tuner channel raises "Unknown command type" on the
                                       HPO commands NNI replays on ``resume`` and the strategy
                                       hangs (``tests/nni_capsnas/nni_compat/test_resume_commands.py``,
                                       ``tests/nni_capsnas/test_crash_resume.py``)
:mod:`.node_preloads`                  the manager hands architectures to trials in the order they
                                       ask (``bind_parameters.js``); the web UI listens on every
                                       interface (``bind_host.js``); the GPU scheduler never gives
                                       a trial every GPU of the machine (``gpu_scheduler.js``)
                                       (``tests/nni_capsnas/test_crash_resume.py``,
                                       ``tests/nni_capsnas/test_webui.py``,
                                       ``tests/nni_capsnas/nni_compat/test_gpu_scheduler.py``)
:mod:`.checkpoint`                     ``_checkpoint_directory``, ``_action``, ``_engine`` of
                                       ``NasExperiment``: atomic checkpoints that a failed resume
                                       never empties (``tests/nni_capsnas/test_crash_resume.py``)
:mod:`.experiment_db`                  NNI's SQLite schema (``db/nni.sqlite``) read directly: the
                                       REST API needs a running manager and drops the metric dict
                                       of a trial that swapped parameters
:mod:`.supernet`                       ``_arch_alpha`` / ``_softmax`` of NNI's differentiable mixed
                                       modules and ``traverse_all_options`` (private helpers)
:mod:`.remote_trials`                  ``_trial_command_params``: NNI renders remote trial
                                       commands with the driver's ``sys.executable``
                                       (``tests/nni_capsnas/test_remote_workers.py``)
:mod:`.manager`                        ``_stop_nni_manager``: stopping a viewing manager without
                                       NNI's ``stop()`` rewriting the saved configuration
:mod:`.trial_upload`                   NNI's node.js tarball rules, to count what a remote search
                                       uploads before NNI silently refuses it
:mod:`.console_log`                    NNI's own stdout handler (every NNI line printed twice under
                                       an application's logging) and the misleading "Trial
                                       concurrency is set to 1" start-up line
=====================================  ===========================================================
"""
