"""The NAS tuner channel skips the HPO commands NNI replays on resume instead of dying on them."""

from __future__ import annotations

from typing import Any

import pytest
from nni.runtime.tuner_command_channel import CommandType, TunerCommandChannel
from nni.runtime.tuner_command_channel.command_type import CommandType as ChannelCommandType

from nni_capsnas.nni_compat.resume_commands import skip_unknown_commands, tolerant_receive


def _channel(commands: list[tuple[Any, str]]) -> TunerCommandChannel:
    """NNI's own tuner channel (never connected), fed with raw commands as the manager sends them."""
    channel = TunerCommandChannel("ws://localhost:1/tuner")
    feed = list(commands)
    channel._receive = lambda: feed.pop(0)  # the websocket read, below NNI's command decoding
    return channel


RESUME_REPLAY = [(ChannelCommandType.ImportData, '[{"parameter": {}, "value": 1}]'),
                 (ChannelCommandType.AddCustomizedTrialJob, '{}'),
                 (ChannelCommandType.RequestTrialJobs, "2")]


def test_nni_alone_dies_on_the_commands_it_replays_on_resume() -> None:
    with pytest.raises(ValueError, match="Unknown command type"):
        _channel(RESUME_REPLAY).receive()


def test_unknown_commands_are_skipped_and_the_next_command_is_returned() -> None:
    command = tolerant_receive(_channel(RESUME_REPLAY).receive)()
    assert command.command_type == CommandType.RequestTrialJobs and command.count == 2


def test_other_errors_still_raise() -> None:
    channel = _channel([(ChannelCommandType.Initialize, "[1, 2]")])  # NNI: Initialize data must be a dict
    with pytest.raises(TypeError, match="must be a dict"):
        tolerant_receive(channel.receive)()


def test_patching_an_engine_is_idempotent() -> None:
    class Engine:
        _channel = _channel(RESUME_REPLAY + [(ChannelCommandType.Terminate, "")])

    engine = Engine()
    assert skip_unknown_commands(engine) and skip_unknown_commands(engine)
    assert engine._channel.receive().command_type == CommandType.RequestTrialJobs
    assert not skip_unknown_commands(object())
