"""Device ids tell hosts apart where the fingerprint cannot: a CPU-identity suffix, and a stored device with
this machine's fingerprint but no (or another) identity is never taken for this machine."""

import dataclasses

import pytest

from lowformer_common import UserError
from measured import Store, resolve_local_device
from measured._fingerprint import ID_SUFFIX_LEN, hardware_fingerprint, local_device, local_device_id, same_machine


def test_device_id_carries_the_cpu_identity():
    fp = hardware_fingerprint()
    assert "cpu_identity" in fp and len(fp["cpu_id"]) == 12
    device_id = local_device_id()
    assert device_id.endswith("-" + fp["cpu_id"][:ID_SUFFIX_LEN])
    other = dict(fp, cpu_identity={**fp["cpu_identity"], "microcode": "0xdifferent"})
    other.pop("cpu_id")
    assert local_device_id(other) != device_id  # same model, cores and memory; another CPU identity
    assert local_device_id(other).rsplit("-", 1)[0] == device_id.rsplit("-", 1)[0]


def test_same_fingerprint_is_not_the_same_machine():
    here = local_device()
    assert same_machine(here)
    legacy = dataclasses.replace(here, fingerprint={k: v for k, v in here.fingerprint.items()
                                                    if k not in ("cpu_id", "cpu_identity")})
    assert not same_machine(legacy)  # e.g. the shipped dataset's host: recorded without an identity
    twin = dataclasses.replace(here, fingerprint={**here.fingerprint, "cpu_id": "0" * 12})
    assert not same_machine(twin)


def test_local_resolves_and_another_host_is_refused(tmp_path):
    store = Store(str(tmp_path / "s.sqlite"), seed=False)
    here = local_device()
    assert resolve_local_device(store, "local").device_id == here.device_id
    assert resolve_local_device(store, "my-box").device_id == "my-box"
    twin = dataclasses.replace(here, device_id="twin-host", fingerprint={k: v for k, v in here.fingerprint.items()
                                                                         if k != "cpu_id"})
    store.add_device(twin)
    with pytest.raises(UserError, match=r"^device: 'twin-host' was measured on another host with this machine's "
                                        r"fingerprint.*use --device local") as e:
        resolve_local_device(store, "twin-host")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="is not a device id"):
        resolve_local_device(store, "../x")
