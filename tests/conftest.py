import glob
import itertools
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid

import pytest

TESTS = pathlib.Path(__file__).parent
DATA = TESTS / "data"


# The longest tests (tens of seconds each, one process), longest first, by their durations on a 2-core host
# (`pytest --durations=60`). xdist's worksteal gives each worker a contiguous share of the collection at the start
# and later moves tests from the tail of one worker's queue to another, so the order below is dealt out: each
# worker's share starts with its turn of these (dealt 0, 1, 1, 0, ... for 2 workers), the short tests fill the rest, and the last tests to
# start anywhere are short. An entry is one unit: the tests it matches stay together (a module entry keeps its
# module-scoped fixture in one worker); parameters listed one by one are dealt separately. A scheduling hint only:
# a test missing here still runs, a stale entry does nothing.
LONGEST_FIRST = (
    "tests/measured/test_campaign.py::test_two_campaigns_at_once[sqlite]",
    "tests/nas/studies/test_int8.py::test_int8_study_quick",
    "tests/measured/test_campaign.py::test_two_campaigns_at_once[postgres]",
    "tests/measured/test_campaign.py::test_sigkill_and_restart_lose_and_remeasure_nothing",
    "tests/measured/test_bundle.py",
    "tests/nas/search/test_postgres.py::test_two_workers_share_a_postgresql_study",
    "tests/nas/test_cli_measure_table.py",
    "tests/nas/search/test_workers.py::test_two_workers_on_one_postgresql_study_draw_different_candidates",
    "tests/nas/search/test_workers.py::test_two_workers_on_one_local_study_draw_different_candidates[sqlite]",
    "tests/measured/test_backends_int8.py",
    "tests/nas/search/test_verify.py::test_verify_measures_the_front_here",
    "tests/measured/test_campaign.py",
    "tests/search_spaces/test_standalone.py",
    "tests/nas/test_cli_study.py",
    "tests/search_spaces/test_onnx.py",
    "tests/search_spaces/test_identity.py",
)


def _rank(nodeid: str) -> int:
    return next((i for i, prefix in enumerate(LONGEST_FIRST) if nodeid.startswith(prefix)), len(LONGEST_FIRST))


def _dealt(items: list, workers: int) -> list:
    """The collection in the order that gives each of ``workers`` initial shares (xdist hands worker i the i-th
    contiguous slice, sizes ``remaining // (workers - i)``) its k-th long units first, then short tests."""
    units: dict[int, list] = {}
    for item in items:
        units.setdefault(_rank(item.nodeid), []).append(item)
    rest = units.pop(len(LONGEST_FIRST), [])
    shares: list[list] = [[] for _ in range(workers)]
    for j, rank in enumerate(sorted(units)):  # snake order (0, 1, 1, 0, ...): no share gets every longer one
        lap, pos = divmod(j, workers)
        shares[workers - 1 - pos if lap % 2 else pos].extend(units[rank])
    out, remaining, rest_iter = [], len(items), iter(rest)
    for i, share in enumerate(shares):
        size = remaining // (workers - i)
        share.extend(itertools.islice(rest_iter, max(0, size - len(share))))
        out.extend(share)
        remaining -= len(share)
    return out + list(rest_iter)


def pytest_collection_modifyitems(config, items):
    # Each xdist worker collects and orders the same way; without workers, simply longest first.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    items[:] = _dealt(items, max(1, workers))
    # Tests that need torch skip cleanly where the `measure` extra is not installed.
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        skip = pytest.mark.skip(reason="needs the measure extra (torch)")
        for item in items:
            if "torch" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def _anchor_cache(tmp_path_factory):
    """One cache of the reference's and anchors' graphs for the whole run (measured._harness.cached_graph,
    cached_int8): exported and quantised once, not once per test. Under xdist the workers share it (beside their
    own base folders, in the run's): the cache takes a file lock around each export and renames each file into
    place, as it does for the processes of one campaign, so no worker repeats what another already wrote."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.getbasetemp().parent / "anchor-cache"
        path.mkdir(exist_ok=True)
        return str(path)
    return str(tmp_path_factory.mktemp("anchor-cache"))


@pytest.fixture(scope="session")
def _seeded_template(tmp_path_factory):
    """A freshly seeded store, built once per session by the store's own seeding: the home stores copy it."""
    from measured import Store

    path = tmp_path_factory.mktemp("seeded-template") / "store.sqlite"
    Store(str(path)).close()  # the last connection closed: WAL checkpointed, one self-contained file
    return path


@pytest.fixture
def seeded_store(tmp_path, _seeded_template):
    """The path of a store file seeded as any new store is (a copy of the session's template), for tests whose child
    processes would otherwise seed it themselves (~1 s of CPU) though the seeding is not what they test."""
    path = tmp_path / "seeded.sqlite"
    shutil.copyfile(_seeded_template, path)
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch, _anchor_cache, _seeded_template):
    """Every test gets its own LOWFORMER_NAS_HOME: no test reads or writes the user's store.

    The home store (``Store()`` in this process, no URL) starts as a copy of a store seeded once per session
    instead of seeding the shipped datasets again (~1 s of CPU per test): the same rows and meta, and the same
    fast path a seeded store takes. Stores at explicit paths, and child processes, still seed for real
    (tests/measured/test_store.py tests the seeding itself)."""
    home = tmp_path / "home"
    monkeypatch.setenv("LOWFORMER_NAS_HOME", str(home))
    monkeypatch.setenv("LOWFORMER_NAS_ANCHOR_CACHE", _anchor_cache)
    monkeypatch.chdir(tmp_path)
    from measured import _store

    target, init = home / "store.sqlite", _store.Store.__init__

    def from_template(self, url=None, *, seed=True):
        if seed and not target.exists() and _store.resolve_url(url) == f"sqlite:///{target}":
            home.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_seeded_template, target)
        init(self, url, seed=seed)

    monkeypatch.setattr(_store.Store, "__init__", from_template)
    yield


# ---------------------------------------------------------------------------------------------- machine load
# Whether a measurement counts as "busy" depends on what else runs on the machine. Tests never rely on the
# real load: in-process timing gets a load monitor with fixed readings (``measured.time_runner`` /
# ``measure_runner`` take a ``monitor`` factory); measurements in child processes and whole CLI runs get a
# busy threshold of 100 % (no reading exceeds it). Only tests of the real LoadMonitor read the real load.


class FixedLoad:
    """A ``LoadMonitor`` stand-in that reads the given shares of the CPU used by other processes, one per
    timed block (the last repeats), and counts the blocks it timed."""

    def __init__(self, *other_pct: float):
        self.readings = list(other_pct) or [0.0]
        self.calls = 0

    def __call__(self) -> "FixedLoad._Block":
        pct = self.readings[min(self.calls, len(self.readings) - 1)]
        self.calls += 1
        return FixedLoad._Block(pct)

    class _Block:
        def __init__(self, pct: float):
            self.other_pct, self.own_pct, self.wall_s = pct, 0.0, 0.0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None


@pytest.fixture
def load_monitor():
    """``load_monitor(60.0, 0.0)``: a monitor factory reading 60 % then 0 % (a busy, then a quiet machine)."""
    return FixedLoad


@pytest.fixture
def quiet_machine():
    """A monitor factory that always reads an idle machine."""
    return FixedLoad(0.0)


def pytest_configure(config):
    config.addinivalue_line("markers", "torch: needs torch (the measure extra)")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# ---------------------------------------------------------------------------------------------- PostgreSQL
# A real server from Debian's binaries (/usr/lib/postgresql/*/bin), run as user ``postgres`` when the tests run
# as root (initdb refuses root), on 127.0.0.1 and a free port with trust authentication; started once per
# session, only when a test asks for it. Without the binaries the PostgreSQL cases skip, except under
# ``CI=true``, where they fail: CI installs PostgreSQL.


def _missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL tests cannot run: {reason} (CI must install postgresql)")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def _pg_bindir() -> str | None:
    def version(path):
        v = path.split("/")[-2]
        return int(v) if v.isdigit() else 0

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """``postgresql://postgres@127.0.0.1:PORT`` of a throw-away server (no database part)."""
    bindir = _pg_bindir()
    if bindir is None:
        _missing("no initdb/pg_ctl found")
    try:
        import psycopg2  # noqa: F401
    except ModuleNotFoundError:
        _missing("psycopg2 is not installed (pip install -e '.[test]')")
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    root = tempfile.mkdtemp(prefix="lowformer-nas-pg-")
    if as_root:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root and there is no 'postgres' user to run initdb as")
        shutil.chown(root, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = os.path.join(root, "data"), os.path.join(root, "server.log")

    def run(*args: str) -> None:
        res = subprocess.run(prefix + list(args), capture_output=True, text=True, timeout=120)
        if res.returncode:
            tail = ""
            if os.path.exists(log):
                with open(log, encoding="utf-8", errors="replace") as f:
                    tail = f.read()[-2000:]
            raise RuntimeError(f"{' '.join(args)} failed: {res.stderr.strip()} {tail}")

    try:
        run(os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        # Parallel test workers each start a server: another may take the free port before this one binds it.
        for attempt in range(3):
            port = _free_port()
            opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off "
                    "-c full_page_writes=off -c max_connections=100")
            try:
                run(os.path.join(bindir, "pg_ctl"), "-D", data, "-l", log, "-o", opts, "-w", "-t", "60", "start")
                break
            except RuntimeError:
                if attempt == 2:
                    raise
    except Exception:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        try:
            run(os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's server; dropped after the test."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:16]}"
    from measured._store import with_installed_driver

    admin = sa.create_engine(with_installed_driver(sa.engine.make_url(f"{postgres_server}/postgres")),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"{postgres_server}/{name}"
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


