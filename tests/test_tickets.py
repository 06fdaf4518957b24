"""Ticket files: round trip, checksum and integrity checks, permissions, old format, names."""

import json
import os
import stat

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lottery_prior.errors import LipError
from lottery_prior.masks import Mask
from lottery_prior.models import create_model
from lottery_prior.tickets import FORMAT, Ticket, tensors_sha256

TINY = {"width": 8, "scales": 2, "skip": 2}


def make_ticket(rewind_step: int = 0, keep_dense: tuple[str, ...] = ()) -> Ticket:
    torch.manual_seed(0)
    model = create_model("dip", **TINY)
    g = torch.Generator().manual_seed(1)
    mask = Mask({n: torch.rand(m.shape, generator=g) < 0.5
                 for n, m in Mask.ones(model, keep_dense).items()})
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    z = torch.rand(1, model.input_depth, 8, 8, generator=g) * 0.1
    meta = {"model": model.spec, "round": 1,
            "imp": {"rewind_step": rewind_step, "keep_dense": list(keep_dense)}}
    return Ticket(mask, weights, z, meta)


def stored(path):
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["lottery_prior"])
        return {k: f.get_tensor(k) for k in f.keys()}, meta  # noqa: SIM118


def write_raw(path, tensors, meta, checksum=True):
    """A ticket file written by hand, with a checksum that matches what it holds."""
    if checksum:
        meta = {**meta, "sha256": tensors_sha256(tensors)}
    save_file(tensors, str(path), metadata={"lottery_prior": json.dumps(meta)})
    return path


def test_round_trip_keeps_everything_and_names_the_weights(tmp_path):
    ticket = make_ticket(rewind_step=5)
    loaded = Ticket.load(ticket.save(tmp_path / "t.safetensors"))
    assert loaded.mask == ticket.mask and torch.equal(loaded.z, ticket.z)
    assert loaded.rewind_weights.keys() == ticket.rewind_weights.keys()
    assert all(torch.equal(loaded.rewind_weights[k], w) for k, w in ticket.rewind_weights.items())
    assert loaded.rewind_step == 5 and loaded.meta["round"] == 1
    tensors, meta = stored(tmp_path / "t.safetensors")
    assert meta["format"] == FORMAT == "lottery_prior.ticket/2"
    assert meta["rewind_step"] == 5 and meta["sha256"] == tensors_sha256(tensors)
    assert {k.split("/")[0] for k in tensors} == {"mask", "weights", "z"}
    assert all(t.dtype == torch.uint8 for k, t in tensors.items() if k.startswith("mask/"))
    assert make_ticket().rewind_step == 0


def test_a_changed_byte_is_refused(tmp_path):
    path = make_ticket().save(tmp_path / "t.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(LipError, match=r"ticket .*t\.safetensors is corrupt: .*checksum"):
        Ticket.load(path)


def test_a_missing_mask_entry_is_refused_unless_kept_dense(tmp_path):
    ticket = make_ticket()
    dropped = next(iter(ticket.mask))
    ticket.mask = Mask({n: m for n, m in ticket.mask.items() if n != dropped})
    path = ticket.save(tmp_path / "t.safetensors")
    with pytest.raises(LipError, match=rf"is corrupt: prunable conv weight '{dropped}' has no "
                                       rf"mask entry"):
        Ticket.load(path)
    dense = make_ticket(keep_dense=(dropped,))
    assert dropped not in Ticket.load(dense.save(tmp_path / "d.safetensors")).mask


def test_mask_values_other_than_zero_and_one_are_refused(tmp_path):
    tensors, meta = stored(make_ticket().save(tmp_path / "t.safetensors"))
    name = next(k for k in tensors if k.startswith("mask/"))
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = 2
    path = write_raw(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(LipError, match="is corrupt: mask entry .* values other than 0 and 1"):
        Ticket.load(path)


@pytest.mark.parametrize("which", ["z", "weights"])
def test_non_finite_weights_or_z_are_refused(tmp_path, which):
    ticket = make_ticket()
    if which == "z":
        ticket.z[0, 0, 0, 0] = float("nan")
    else:
        next(iter(ticket.rewind_weights.values())).view(-1)[0] = float("inf")
    path = ticket.save(tmp_path / "t.safetensors")  # a faithful copy of a broken ticket
    with pytest.raises(LipError, match="is corrupt: .* is not finite"):
        Ticket.load(path)


def test_a_folder_is_named_as_such(tmp_path):
    folder = tmp_path / "round-01"
    folder.mkdir()
    with pytest.raises(LipError, match=r"is a folder; give the ticket file \(e\.g\. .*/round-01/"
                                       r"ticket\.safetensors\)"):
        Ticket.load(folder)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_ticket_files_get_ordinary_permissions(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = make_ticket().save(tmp_path / "t.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert os.listdir(tmp_path) == ["t.safetensors"]  # no temporary left


def test_format_one_files_still_load(tmp_path):
    ticket = make_ticket()
    tensors = {f"mask/{n}": m.to(torch.uint8) for n, m in ticket.mask.items()}
    tensors.update({f"theta0/{n}": w for n, w in ticket.rewind_weights.items()})
    tensors["z"] = ticket.z
    meta = {"format": "lottery_prior.ticket/1", "version": "0.1", **ticket.meta}
    path = write_raw(tmp_path / "old.safetensors", tensors, meta, checksum=False)
    loaded = Ticket.load(path)
    assert loaded.mask == ticket.mask
    assert all(torch.equal(loaded.rewind_weights[k], w) for k, w in ticket.rewind_weights.items())
    loaded.build()
    resaved, meta = stored(loaded.save(tmp_path / "new.safetensors"))  # re-saved as format 2
    assert meta["format"] == FORMAT and any(k.startswith("weights/") for k in resaved)


def test_weights_of_another_model_get_a_complete_one_line_message():
    ticket = make_ticket()
    ticket.meta["model"] = {"name": "dip", "options": {**TINY, "width": 16, "scales": 3}}
    with pytest.raises(LipError, match="do not fit") as info:
        ticket.build()
    message = str(info.value)
    assert "\n" not in message
    assert "missing (" in message and "of another shape, ticket vs model (" in message
    assert message.endswith("the ticket is from another model or other model options")
