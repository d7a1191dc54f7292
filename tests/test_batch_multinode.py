"""The batch job on a 3-node Ray cluster: engine actors spread over nodes, and a node lost mid-job.

The cluster is `ray.cluster_utils.Cluster`: a head and two worker raylets on this machine, each
declaring one `engine_slot`, and the job asks one slot per engine actor (`resources.custom`), so
engine actors can only land on different nodes. The job is the real `qvq-ray solve --address`
(a subprocess driver, connected to the head node, where the read and write tasks run) with
`engine.kind: openai` against the simulated endpoint of benchmarks/sim_endpoint.py, run in this
process with requests of ~0.3-1 s: the model's speed plays no part.

The endpoint tells apart the engine actors that call it: for each request it looks up which process
owns the client end of the TCP connection (the peer port in /proc/net/tcp, then the process holding
that socket's inode among /proc/*/fd; all the cluster's processes run on this machine). Those pids
are then found in the GCS actor table (what `ray.util.state.list_actors` reads, without needing a
dashboard): each is an actor of the solve stage (`MapWorker(Map(SolveProblems))`), with its node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import sim_endpoint_module, sim_job_config

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)")]

ROOT = Path(__file__).resolve().parent.parent
JOB_TIMEOUT_S = 180  # a bound for a machine busy with other work: alone, a job here takes 20-40 s


sim = sim_endpoint_module()


# ----------------------------------------------------------------------------- who is calling


def _tcp_inode(local_port: int, remote_port: int) -> int | None:
    """The inode of the IPv4 loopback socket 127.0.0.1:local_port -> 127.0.0.1:remote_port."""
    want_local, want_remote = f"0100007F:{local_port:04X}", f"0100007F:{remote_port:04X}"
    with open("/proc/net/tcp") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            if fields[1] == want_local and fields[2] == want_remote:
                return int(fields[9])
    return None


def _pid_holding(inode: int) -> int | None:
    target = f"socket:[{inode}]"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") == target:
                    return int(entry)
        except OSError:  # gone meanwhile, or not ours
            continue
    return None


class RecordingServer(sim.SimServer):
    """The simulated endpoint, recording for each generation request the pid of the process that sent
    it and when it ran (time.monotonic()). The socket's inode is looked up per request (a port may be
    reused), its owner once per connection (clients keep connections alive)."""

    def __init__(self, **options):
        super().__init__(**options)
        self.requests: list[tuple[int | None, float, float]] = []  # (client pid, start, end)
        self._pid_of_socket: dict[int, int] = {}

    def client_pid(self, request) -> int | None:
        peer = request.transport.get_extra_info("peername")
        own = request.transport.get_extra_info("sockname")
        inode = _tcp_inode(peer[1], own[1]) if peer and own else None
        if inode and inode not in self._pid_of_socket:
            pid = _pid_holding(inode)
            if pid is not None:
                self._pid_of_socket[inode] = pid
        return self._pid_of_socket.get(inode) if inode else None

    async def _generate(self, request, *, chat: bool):
        pid = self.client_pid(request)
        start = time.monotonic()
        try:
            return await super()._generate(request, chat=chat)
        finally:
            self.requests.append((pid, start, time.monotonic()))

    def pids(self, since: float = 0.0) -> dict[int | None, int]:
        counts: dict[int | None, int] = {}
        for pid, start, _ in list(self.requests):
            if start >= since:
                counts[pid] = counts.get(pid, 0) + 1
        return counts


@pytest.fixture()
def endpoint():
    # completions of ~300-1,000 tokens (median 500, capped at 1,000) at 1,000 tokens/s: requests of ~0.3-1 s
    with sim.SimEndpoint(
        in_process=True,
        tokens_per_s=1000.0,
        server_class=RecordingServer,
        server_options={"median": 500, "sigma": 0.3, "cap": 1000},
    ) as handle:
        yield handle


# ----------------------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def cluster():
    """Head (2 CPUs) and two workers (1 CPU), one engine slot each, for the module (the node-loss
    test, the module's last, leaves two); shut down however the tests end.

    Starting and shutting down a Cluster repoints, then clears, this process's Ray internal-KV
    client (module state of ray.experimental.internal_kv): where this process is also a driver of
    the session's cluster (the `ray_cluster` fixture, when the whole suite runs), that driver's
    client is put back, or Serve tests after this module would find it gone."""
    from ray.cluster_utils import Cluster
    from ray.experimental import internal_kv

    session_kv = internal_kv.global_gcs_client

    def restore_session_kv() -> None:
        if session_kv is not None:
            internal_kv._initialize_internal_kv(session_kv)

    cluster = Cluster()
    try:
        cluster.add_node(num_cpus=2, resources={"engine_slot": 1}, include_dashboard=False)
        for _ in range(2):
            cluster.add_node(num_cpus=1, resources={"engine_slot": 1})
        cluster.wait_for_nodes()
        restore_session_kv()
        yield cluster
    finally:
        cluster.shutdown()
        restore_session_kv()


SOLVE_ACTOR = "MapWorker(Map(SolveProblems))"  # Ray Data's actor of the solve stage, as the actor table names it


def _solve_actors(cluster, *, known: frozenset[str] = frozenset()) -> list[dict]:
    """The solve stage's engine actors in the GCS actor table, ALIVE or not (a restarted one: where it
    runs now), except those whose ids are `known` (an earlier job's, on the module's cluster)."""
    return [entry for entry in cluster.global_state.actor_table(None).values()
            if entry["ActorClassName"] == SOLVE_ACTOR and entry["ActorID"] not in known]


# ----------------------------------------------------------------------------- the job


def _problems(root: Path, count: int) -> tuple[Path, list[str]]:
    """`count` problems 'What is A + B?' (the endpoint answers them right) in our JSONL format."""
    root.mkdir()
    ids = [f"p{i:04d}" for i in range(count)]
    with open(root / "problems.jsonl", "w") as handle:
        for i, problem_id in enumerate(ids):
            handle.write(json.dumps({"id": problem_id, "question": f"What is {i} + 7?", "answer": str(i + 7)}) + "\n")
    return root, ids


def _config(path: Path, base_url: str, *, replicas: int, slots: int) -> Path:
    path.write_text(yaml.safe_dump(sim_job_config(
        base_url,
        resources={"num_cpus": 0.25, "custom": {"engine_slot": 1}},
        batch={"num_replicas": replicas, "max_concurrent_solves": slots, "rows_per_batch": 8},
    )))
    return path


class Job:
    """`qvq-ray solve INPUT --out OUT --config CFG --address CLUSTER` as a subprocess (its own driver)."""

    def __init__(self, tmp_path: Path, input_dir: Path, config: Path, address: str):
        self.out = tmp_path / "out"
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        command = [sys.executable, "-m", "qvq_ray.cli", "solve", str(input_dir), "--out", str(self.out),
                   "--config", str(config), "--address", address]
        with open(self.logs / "stdout.txt", "w") as stdout, open(self.logs / "stderr.txt", "w") as stderr:
            self.proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=str(self.logs),
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def wait(self, timeout: float) -> dict:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the job did not finish in {timeout:.0f} s\n{self.tail()}")
        assert code == 0, f"the job exited {code}\n{self.tail()}"
        return json.loads((self.logs / "stdout.txt").read_text().strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self) -> str:
        return "\n".join((self.logs / name).read_text()[-3000:] for name in ("stdout.txt", "stderr.txt"))


@pytest.fixture()
def start_job(tmp_path):
    jobs: list[Job] = []

    def start(*args) -> Job:
        jobs.append(Job(tmp_path, *args))
        return jobs[-1]

    yield start
    for job in jobs:  # a failed test leaves no driver behind
        job.kill()


def _written_ids(out: Path) -> list[str]:
    import pyarrow.parquet as pq

    from qvq_ray.results.parts import part_files

    ids: list[str] = []
    for path in part_files(out):
        ids += [str(i) for i in pq.read_table(path, columns=["id"]).column("id").to_pylist()]
    return ids


def _all_busy_at_once(requests: list[tuple[int | None, float, float]], pids: set[int]) -> bool:
    """Whether at some moment every process in `pids` had a request in flight."""
    for _, moment, _ in requests:
        if {pid for pid, start, end in requests if start <= moment < end} >= pids:
            return True
    return False


# ----------------------------------------------------------------------------- the tests


def test_three_engine_actors_on_three_nodes_each_solve_and_every_row_is_written_once(cluster, endpoint, start_job, tmp_path):
    """3 engine actors, one per node (one engine slot each): every row written exactly once, and all
    three actors solved. Proof of the latter: the endpoint saw requests from exactly three client
    processes; the actor table says they are the solve stage's three actors (no restart), on three
    distinct nodes (the cluster's three); and at some moment all three had a request in flight."""
    assert len(cluster.list_all_nodes()) == 3, "the node-loss test ran first: it must be the module's last"
    input_dir, input_ids = _problems(tmp_path / "set", 150)
    earlier = frozenset(entry["ActorID"] for entry in _solve_actors(cluster))
    job = start_job(input_dir, _config(tmp_path / "job.yaml", endpoint.base_url, replicas=3, slots=3), cluster.address)
    summary = job.wait(JOB_TIMEOUT_S)

    ids = _written_ids(job.out)
    assert len(ids) == len(set(ids)) == len(input_ids)
    assert set(ids) == set(input_ids)
    assert summary["rows_in"] == summary["rows_out"] == 150
    assert summary["errors"] == 0 and summary["duplicates"] == 0

    server: RecordingServer = endpoint.server
    clients = server.pids()
    assert None not in clients, f"a request whose client process was not found: {clients}"
    assert len(clients) == 3, f"requests per client process: {clients}"
    assert sum(clients.values()) == 150  # one attempt per problem, no retried request
    assert min(clients.values()) >= 10, f"an engine actor barely worked: {clients}"
    actors = _solve_actors(cluster, known=earlier)
    assert len(actors) == 3 and all(entry["NumRestarts"] == 0 for entry in actors)
    assert {entry["Pid"] for entry in actors} == set(clients), f"actors {actors}, client processes {clients}"
    nodes = {entry["Address"]["NodeID"] for entry in actors}
    assert nodes == {node.node_id for node in cluster.list_all_nodes()}
    assert _all_busy_at_once(server.requests, set(clients)), "the three engine actors never solved at the same time"


def test_a_node_lost_mid_job_the_job_still_writes_every_row_once(cluster, endpoint, start_job, tmp_path):
    """2 engine actors on 3 one-slot nodes; once part files exist, a worker node hosting an engine actor
    is removed (its raylet and workers killed). Ray Data restarts the actor on the free node and
    retries the lost work; the job must end with every input id on disk exactly once."""
    from qvq_ray.results.parts import part_files

    input_dir, input_ids = _problems(tmp_path / "set", 120)
    job = start_job(input_dir, _config(tmp_path / "job.yaml", endpoint.base_url, replicas=2, slots=4), cluster.address)
    server: RecordingServer = endpoint.server
    workers = {node.node_id: node for node in cluster.worker_nodes}

    deadline = time.monotonic() + JOB_TIMEOUT_S
    victim = None
    while victim is None:
        assert job.proc.poll() is None, f"the job ended before a node could be removed\n{job.tail()}"
        assert time.monotonic() < deadline, f"no part file after {JOB_TIMEOUT_S} s\n{job.tail()}"
        if part_files(job.out):
            alive = [e for e in _solve_actors(cluster) if e["State"] == "ALIVE" and e["Address"]["NodeID"] in workers]
            if alive:
                victim = alive[0]
        time.sleep(0.2)
    written_before = len(_written_ids(job.out))
    assert written_before < len(input_ids), "the job was done before the node went"
    removed_at = time.monotonic()
    cluster.remove_node(workers[victim["Address"]["NodeID"]])
    gone_at = time.monotonic()  # the node's processes were killed meanwhile (the victim sent requests till then)

    summary = job.wait(JOB_TIMEOUT_S)
    ids = _written_ids(job.out)
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} ids written twice"
    assert set(ids) == set(input_ids)
    assert summary["rows_in"] == summary["rows_out"] == len(input_ids)
    assert summary["errors"] == 0 and summary["duplicates"] == 0

    # Ray restarted the lost engine actor (Ray Data asks max_restarts=-1) on the node left free ...
    restarted = next(e for e in _solve_actors(cluster) if e["ActorID"] == victim["ActorID"])
    assert restarted["NumRestarts"] >= 1 and restarted["Address"]["NodeID"] != victim["Address"]["NodeID"]

    # ... and its work went on there: a process that had not called the endpoint before did after the loss
    before = {pid for pid, start, _ in server.requests if start < removed_at}
    after = set(server.pids(since=gone_at))
    assert after - before, f"no new engine process after the loss: before {before}, after {after}"
