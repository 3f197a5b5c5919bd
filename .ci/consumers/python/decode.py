#!/usr/bin/env python3
"""heap.events read by Python, the way a consumer outside this project reads it.

Every value is decoded twice, with fastavro and with the Apache avro package,
and both must succeed, consume the value to its last byte and agree.

    decode.py fingerprint SCHEMA.avsc...
        per schema and library: its Parsing Canonical Form, the CRC-64-AVRO
        fingerprint as an unsigned 64-bit hex number, and the 10-byte
        single-object header (c3 01, then the fingerprint little-endian).

    decode.py decode-files [OPTIONS] FILE|DIR...
        one record value per file, the file's bytes exactly as the Kafka
        record value; a directory means every regular file in it whose name
        does not start with '.', in name order.

    decode.py decode-kafka [OPTIONS] --bootstrap HOST:PORT --topic T [--count N] [--timeout S]
        every partition of T from its beginning (confluent-kafka, librdkafka;
        read_committed; nothing committed). --count N > 0: the first N records
        (fewer within the timeout, default 60 s, fails); --count 0 (default):
        every record up to each partition's end.

    OPTIONS: --schema FILE (repeat for every known version; the first is the
    reader schema), --registry URL (Confluent-compatible Schema Registry;
    default $SCHEMA_REGISTRY_URL), --expect single-object|confluent (every record
    must be so encoded: say, to prove a registry mode was in use), --quiet (only
    the summary).

Single-object values (c3 01 + 8-byte fingerprint): the header must carry the
fingerprint the Avro specification defines, that of the schema's Parsing
Canonical Form, of one of the --schema files; the body is decoded with that
writer schema resolved to the reader schema. The specification's fingerprint
is fastavro's: the avro package's canonical form is not conformant for a
primitive with attributes ({"type":"long","logicalType":"timestamp-millis"}
becomes {"type":"long"} instead of "long", the very same deviation as
goavro's), so its fingerprint of such a schema is not the one Java's
BinaryMessageDecoder looks for; `fingerprint` prints both, and a header that
carries avro's (goavro's) fingerprint fails with a message that says so.
Confluent-framed values (00 + 4-byte big-endian schema id): the writer schema
comes from GET {registry}/schemas/ids/{id}.

Output: one JSON line per record (unless --quiet), then "python: decoded N,
failed M" and, when M > 0, "python: first failure: ...". Exit status 0 only
when every record decoded; 1 otherwise; 2 for a usage error.

The libraries are pip-installed, at the versions pinned below, into a venv
this script creates ($MH_PYTHON_VENV, default
~/.cache/mailchimp-heap/venv); the script then runs itself in that venv.
"""

import os
import sys

PINS = ["fastavro==1.13.1", "avro==1.12.2", "confluent-kafka==2.16.1"]
VENV = os.environ.get("MH_PYTHON_VENV") or os.path.join(
    os.path.expanduser("~"), ".cache", "mailchimp-heap", "venv"
)


def _ensure_venv():
    """Creates the venv and installs PINS once, then re-executes in it."""
    py = os.path.join(VENV, "bin", "python")
    here = os.path.realpath(sys.prefix) == os.path.realpath(VENV)
    stamp = os.path.join(VENV, ".mailchimp-heap-pins")
    want = "\n".join(PINS) + "\n"

    def ready():
        try:
            with open(stamp) as f:
                return f.read() == want and os.access(py, os.X_OK)
        except OSError:
            return False

    if not ready():
        import fcntl
        import subprocess

        os.makedirs(os.path.dirname(VENV), exist_ok=True)
        with open(VENV + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two runs must not install over each other
            if not ready():
                log = VENV + ".install.log"
                print(f"decode.py: installing {' '.join(PINS)} into {VENV}", file=sys.stderr)
                with open(log, "w") as out:
                    steps = [[sys.executable, "-m", "venv", VENV]] if not os.access(py, os.X_OK) else []
                    steps.append([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", *PINS])
                    for cmd in steps:
                        if subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT) != 0:
                            with open(log) as f:
                                sys.stderr.write(f.read()[-3000:])
                            sys.exit(f"decode.py: FAILED: {' '.join(cmd)} (log {log})")
                with open(stamp, "w") as f:
                    f.write(want)
    if not here:
        if os.environ.get("MH_PYTHON_VENV_EXEC") == "1":
            sys.exit(f"decode.py: FAILED: re-executed in {py} but sys.prefix is {sys.prefix}")
        os.environ["MH_PYTHON_VENV_EXEC"] = "1"
        os.execv(py, [py, os.path.abspath(__file__), *sys.argv[1:]])


_ensure_venv()

import io  # noqa: E402
import json  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import avro.io  # noqa: E402
import avro.schema  # noqa: E402
import fastavro  # noqa: E402
from fastavro.schema import fingerprint as fa_fingerprint  # noqa: E402
from fastavro.schema import to_parsing_canonical_form  # noqa: E402


class UsageError(Exception):
    pass


class DecodeFailure(Exception):
    pass


def versions():
    import confluent_kafka

    return (
        f"fastavro {fastavro.__version__}, avro {_dist_version('avro')}, "
        f"confluent-kafka {_dist_version('confluent-kafka')} (librdkafka {confluent_kafka.libversion()[0]})"
    )


def _dist_version(name):
    from importlib.metadata import version

    return version(name)


class Schemas:
    """One schema version as both libraries see it."""

    def __init__(self, text, origin):
        self.origin = origin
        self.text = text
        self.fa = fastavro.parse_schema(json.loads(text), named_schemas={})
        self.av = avro.schema.parse(text)
        self.fa_canonical = to_parsing_canonical_form(json.loads(text))
        # fastavro returns the 8 bytes little-endian, as hex: as in the header.
        self.fa_header_fp = bytes.fromhex(fa_fingerprint(self.fa_canonical, "CRC-64-AVRO"))
        self.av_canonical = self.av.canonical_form
        self.av_header_fp = self.av.fingerprint("CRC-64-AVRO")  # bytes, little-endian

    @property
    def name(self):
        return self.av.fullname


def fp64(header_fp):
    """The fingerprint as the unsigned number Java prints, from its header bytes."""
    return "%016x" % struct.unpack("<Q", header_fp)[0]


def cmd_fingerprint(files):
    if not files:
        raise UsageError("fingerprint needs a schema file")
    print(f"python libraries: {versions()}")
    for f in files:
        with open(f) as fh:
            s = Schemas(fh.read(), f)
        print(f"fastavro schema={f}")
        print(f"fastavro canonical={s.fa_canonical}")
        print(f"fastavro fingerprint64={fp64(s.fa_header_fp)}")
        print(f"fastavro header=c301{s.fa_header_fp.hex()}")
        print(f"avro schema={f}")
        print(f"avro canonical={s.av_canonical}")
        print(f"avro fingerprint64={fp64(s.av_header_fp)}")
        print(f"avro header=c301{s.av_header_fp.hex()}")
        if s.av_canonical != s.fa_canonical:
            print(
                "avro note: the avro package's canonical form differs from fastavro's "
                "(it keeps {\"type\":...} for a primitive with attributes such as logicalType); "
                "fastavro's is the specification's"
            )
    return 0


class Decoder:
    def __init__(self, schema_files, registry, expect=None):
        self.expect = expect
        self.versions = []
        for f in schema_files:
            with open(f) as fh:
                self.versions.append(Schemas(fh.read(), f))
        self.reader = self.versions[0] if self.versions else None
        self.registry = registry.rstrip("/") if registry else None
        self.by_id = {}

    def decode(self, v):
        out = self.frame(v)
        if self.expect and out["encoding"] != self.expect:
            raise DecodeFailure(f"decoded, but encoded {out['encoding']} where every record should be {self.expect}")
        return out

    def frame(self, v):
        if v is None:
            raise DecodeFailure("null value (tombstone)")
        if len(v) >= 2 and v[0] == 0xC3 and v[1] == 0x01:
            return self.single_object(v)
        if len(v) >= 1 and v[0] == 0x00:
            return self.confluent(v)
        raise DecodeFailure(
            "neither single-object encoded (c3 01) nor Confluent-framed (00): starts with " + v[:10].hex()
        )

    def single_object(self, v):
        if not self.versions:
            raise DecodeFailure("single-object value but no --schema given")
        if len(v) < 10:
            raise DecodeFailure(f"single-object value of only {len(v)} bytes")
        header_fp = v[2:10]
        writer = next((s for s in self.versions if s.fa_header_fp == header_fp), None)
        if writer is None:
            known = ", ".join(fp64(s.fa_header_fp) for s in self.versions)
            quirk = next((s for s in self.versions if s.av_header_fp == header_fp), None)
            why = (
                f"; it is the avro package's (and goavro's) non-conformant fingerprint of {quirk.origin}"
                if quirk
                else ""
            )
            raise DecodeFailure(
                f"header fingerprint {fp64(header_fp)} (header bytes {v[:10].hex()}) is none of the "
                f"schemas' Parsing Canonical Form fingerprints ({known}){why}"
            )
        record = self.body(writer, v, 10)
        return {"encoding": "single-object", "fingerprint": fp64(header_fp), "writer": writer.name, "record": record}

    def confluent(self, v):
        if len(v) < 5:
            raise DecodeFailure(f"Confluent-framed value of only {len(v)} bytes")
        (schema_id,) = struct.unpack(">i", v[1:5])
        writer = self.writer_by_id(schema_id)
        record = self.body(writer, v, 5)
        return {
            "encoding": "confluent",
            "schema_id": schema_id,
            "writer_fingerprint": fp64(writer.fa_header_fp),
            "record": record,
        }

    def body(self, writer, v, offset):
        reader = self.reader or writer
        data = v[offset:]
        # fastavro
        bio = io.BytesIO(data)
        try:
            fa = fastavro.schemaless_reader(bio, writer.fa, None if reader is writer else reader.fa)
        except Exception as e:  # noqa: BLE001 - any failure is the record's
            raise DecodeFailure(f"fastavro: {type(e).__name__}: {e}") from e
        if bio.tell() != len(data):
            raise DecodeFailure(f"fastavro: {len(data) - bio.tell()} bytes after the datum")
        # avro
        bio = io.BytesIO(data)
        try:
            av = avro.io.DatumReader(writer.av, reader.av).read(avro.io.BinaryDecoder(bio))
        except Exception as e:  # noqa: BLE001
            raise DecodeFailure(f"avro: {type(e).__name__}: {e}") from e
        if bio.tell() != len(data):
            raise DecodeFailure(f"avro: {len(data) - bio.tell()} bytes after the datum")
        if normal(fa) != normal(av):
            raise DecodeFailure(f"fastavro and avro disagree: {normal(fa)} != {normal(av)}")
        return normal(fa)

    def writer_by_id(self, schema_id):
        s = self.by_id.get(schema_id)
        if s is not None:
            return s
        if not self.registry:
            raise DecodeFailure(f"Confluent-framed value (schema id {schema_id}) but no --registry or SCHEMA_REGISTRY_URL")
        url = f"{self.registry}/schemas/ids/{schema_id}"
        req = urllib.request.Request(url, headers={"Accept": "application/vnd.schemaregistry.v1+json, application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                body = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            raise DecodeFailure(f"GET {url}: HTTP {e.code}: {e.read()[:300]!r}") from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise DecodeFailure(f"GET {url}: {e}") from e
        if str(body.get("schemaType", "AVRO")).upper() != "AVRO":
            raise DecodeFailure(f"schema id {schema_id} is {body.get('schemaType')}, not AVRO")
        if "schema" not in body:
            raise DecodeFailure(f'GET {url}: no "schema" in {str(body)[:300]}')
        s = Schemas(body["schema"], url)
        self.by_id[schema_id] = s
        return s


def normal(x):
    """JSON-ready, and the same for fastavro's and avro's results."""
    if isinstance(x, dict):
        return {k: normal(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [normal(v) for v in x]
    if isinstance(x, bytes):
        return x.hex()
    if hasattr(x, "isoformat"):
        return x.isoformat()
    return x


class Tally:
    def __init__(self, quiet):
        self.quiet = quiet
        self.decoded = 0
        self.failed = 0
        self.first_failure = None

    def add(self, source, value, decoder):
        try:
            out = decoder.decode(value)
        except DecodeFailure as e:
            self.fail(source, str(e))
            return
        except Exception as e:  # noqa: BLE001
            self.fail(source, f"{type(e).__name__}: {e}")
            return
        self.decoded += 1
        if not self.quiet:
            print(json.dumps({"source": source, **out}, ensure_ascii=False, default=str))

    def fail(self, source, message):
        self.failed += 1
        if self.first_failure is None:
            self.first_failure = f"{source}: {message}"
        if not self.quiet:
            print(json.dumps({"source": source, "error": message}, ensure_ascii=False))

    def finish(self):
        print(f"python: decoded {self.decoded}, failed {self.failed}")
        if self.first_failure:
            print(f"python: first failure: {self.first_failure}")
        return 0 if self.failed == 0 else 1


def expand(inputs):
    out = []
    for p in inputs:
        if os.path.isdir(p):
            out += sorted(
                os.path.join(p, n)
                for n in os.listdir(p)
                if not n.startswith(".") and os.path.isfile(os.path.join(p, n))
            )
        else:
            out.append(p)
    return out


def read_kafka(bootstrap, topic, count, timeout, decoder, tally):
    try:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
    except ImportError as e:
        tally.fail("kafka", f"confluent-kafka is not importable ({e}): only decode-files works")
        return
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": "mailchimp-heap-ci-python-consumer",
            "group.id": "mailchimp-heap-ci-python-consumer",  # librdkafka wants one; nothing is committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",  # the mapper produces heap.events in transactions
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "allow.auto.create.topics": False,
        }
    )
    deadline = time.monotonic() + timeout
    try:
        md = c.list_topics(topic, timeout=timeout)
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            tally.fail("kafka", f"topic {topic} not found on {bootstrap}: {t.error if t else 'no metadata'}")
            return
        parts = sorted(t.partitions)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        at_end = set()
        read = 0
        while True:
            if count > 0 and read >= count:
                break
            if count == 0 and len(at_end) == len(parts):
                break
            left = deadline - time.monotonic()
            if left <= 0:
                want = f"{count} records" if count > 0 else f"the end of partitions {sorted(set(parts) - at_end)}"
                tally.fail("kafka", f"timed out after {timeout} s with {read} records of {topic}, expected {want}")
                return
            m = c.poll(min(left, 0.5))
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
                    continue
                tally.fail("kafka", f"consumer error: {m.error()}")
                if m.error().fatal():
                    return
                continue
            at_end.discard(m.partition())
            read += 1
            tally.add(f"{topic}/{m.partition()}@{m.offset()}", m.value(), decoder)
        if read == 0:
            tally.fail("kafka", f"topic {topic} has no records")
    finally:
        c.close()


def main(argv):
    if not argv:
        raise UsageError("no command")
    cmd, args = argv[0], argv[1:]
    if cmd == "fingerprint":
        return cmd_fingerprint(args)
    if cmd not in ("decode-files", "decode-kafka"):
        raise UsageError(f"unknown command {cmd}")
    schema_files, inputs = [], []
    registry = os.environ.get("SCHEMA_REGISTRY_URL")
    bootstrap = topic = None
    count, timeout, quiet, expect = 0, 60.0, False, None
    i = 0

    def value():
        nonlocal i
        i += 1
        if i >= len(args):
            raise UsageError(f"{args[i - 1]} needs a value")
        return args[i]

    def number(v, opt):
        try:
            n = float(v) if opt == "--timeout" else int(v)
        except ValueError:
            raise UsageError(f"{opt} wants a non-negative number, not {v}") from None
        if n < 0:
            raise UsageError(f"{opt} wants a non-negative number, not {v}")
        return n

    while i < len(args):
        a = args[i]
        if a == "--schema":
            schema_files.append(value())
        elif a == "--registry":
            registry = value()
        elif a == "--bootstrap":
            bootstrap = value()
        elif a == "--topic":
            topic = value()
        elif a == "--count":
            count = number(value(), a)
        elif a == "--timeout":
            timeout = number(value(), a)
        elif a == "--quiet":
            quiet = True
        elif a == "--expect":
            expect = value()
            if expect not in ("single-object", "confluent"):
                raise UsageError(f"--expect wants single-object or confluent, not {expect}")
        elif a.startswith("--"):
            raise UsageError(f"unknown option {a}")
        else:
            inputs.append(a)
        i += 1
    decoder = Decoder(schema_files, registry, expect)
    tally = Tally(quiet)
    if cmd == "decode-files":
        if not inputs:
            raise UsageError("decode-files needs a file or directory")
        files = expand(inputs)
        for f in files:
            with open(f, "rb") as fh:
                tally.add(f, fh.read(), decoder)
        if not files:
            tally.fail("input", f"no files to decode in {inputs}")
    else:
        if not bootstrap or not topic:
            raise UsageError("decode-kafka needs --bootstrap and --topic")
        if inputs:
            raise UsageError(f"unexpected arguments {inputs}")
        read_kafka(bootstrap, topic, count, timeout, decoder, tally)
    return tally.finish()


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except UsageError as e:
        print(f"python: {e}", file=sys.stderr)
        print(
            "usage: decode.py fingerprint SCHEMA...\n"
            "       decode.py decode-files [--schema F]... [--registry URL] [--expect ENC] [--quiet] FILE|DIR...\n"
            "       decode.py decode-kafka [--schema F]... [--registry URL] [--expect ENC] [--quiet] --bootstrap B --topic T [--count N] [--timeout S]",
            file=sys.stderr,
        )
        code = 2
    except Exception as e:  # noqa: BLE001
        print(f"python: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.exit(code)
