"""Every use of NNI 3.0's private API and every runtime patch of NNI, in one place.

NNI 3.0 (September 2023) is NNI's last release; on a current stack (Python 3.11, PyTorch 2.13+,
Lightning 2.x) some of its behaviour must be corrected, and some of what this project needs
is only reachable through private attributes. Nothing here edits NNI's files: each module
wraps one behaviour, says what NNI does and why it is corrected, and names the test that fails
without it.

=====================================  ===========================================================
module                                 NNI behaviour it corrects or private API it wraps, and the
                                       test that fails without it
=====================================  ===========================================================
:mod:`.resume_commands`                the NAS tuner channel raises "Unknown command type" on the
                                       HPO commands NNI replays on ``resume`` and the strategy
                                       hangs (``nni_compat/test_resume_commands.py``, the crash
                                       drill of ``app/test_crash_resume.py``)
:mod:`.node_preloads`                  the manager hands architectures to trials in the order they
                                       ask (``bind_parameters.js``: ``app/test_crash_resume.py::
                                       test_every_trial_trains_the_architecture_nni_records_for_it``);
                                       the web UI listens on every interface (``bind_host.js``:
                                       ``app/test_webui.py::test_viewer_prints_the_loopback_address_
                                       and_listens_there_only``); the GPU scheduler never gives a
                                       trial every GPU of the machine (``gpu_scheduler.js``:
                                       ``nni_compat/test_gpu_scheduler.py``)
:mod:`.checkpoint`                     ``_checkpoint_directory``, ``_action``, ``_engine`` of
                                       ``NasExperiment``: a failed resume never empties the
                                       checkpoint (``nni_compat/test_checkpoint.py``), files are
                                       replaced whole (``app/test_crash_resume.py::
                                       test_checkpoint_files_are_replaced_whole``)
:mod:`.experiment_db`                  NNI's SQLite schema (``db/nni.sqlite``) read directly: the
                                       REST API needs a running manager, and a trial whose
                                       parameters were swapped is recorded with the wrong one
                                       (``app/test_crash_resume.py::
                                       test_trial_records_follow_the_parameter_a_trial_reported``)
:mod:`.supernet`                       ``_arch_alpha`` / ``_softmax`` of NNI's differentiable mixed
                                       modules and ``traverse_all_options`` (private helpers; used
                                       by E2RNAS' expected costs, ``test_e2rnas.py``)
:mod:`.remote_trials`                  ``_trial_command_params``: NNI renders remote trial
                                       commands with the driver's ``sys.executable``
                                       (``app/test_remote_workers.py``: two workers with other
                                       interpreters)
:mod:`.manager`                        ``_stop_nni_manager``: stopping a viewing manager without
                                       NNI's ``stop()`` rewriting the saved configuration
                                       (``app/test_webui.py``: nothing left running, files kept)
:mod:`.trial_upload`                   NNI's node.js tarball rules, to count what a remote search
                                       uploads before NNI silently refuses it
                                       (``app/test_training_service.py``)
:mod:`.console_log`                    NNI's own stdout handler (every NNI line printed twice under
                                       an application's logging), the misleading "Trial
                                       concurrency is set to 1" start-up line and the "GPU found
                                       but will not be used" warning
                                       (``nni_compat/test_console_log.py``)
=====================================  ===========================================================

Test paths are under ``tests/nni_capsnas/``.
"""
