# mailchimp-heap: see README.md. Every target works on a machine with only Go.
GO      ?= go
TIMEOUT ?= 30m

.PHONY: all test test-short vet fmt fmt-check run build bench attack fuzz kafka kafka-stop ci clean

all: vet test

## test: vet, then every module's tests with the race detector (kfake, and
## redis-server when installed, else embedded miniredis, which the output says).
test: vet
	@if [ -n "$$REDIS_URL" ]; then echo "make test: Redis at REDIS_URL"; \
	elif command -v redis-server >/dev/null 2>&1; then echo "make test: Redis is a redis-server started per test"; \
	else echo "make test: no REDIS_URL and no redis-server: Redis-backed tests use embedded miniredis"; fi
	@if [ -n "$$KAFKA_BROKERS" ]; then echo "make test: Kafka at KAFKA_BROKERS=$$KAFKA_BROKERS"; \
	else echo "make test: Kafka is in-process kfake (set KAFKA_BROKERS for a real broker)"; fi
	$(GO) test -race -count=1 -timeout $(TIMEOUT) work

## test-short: the inner loop: the same tests with -short, which skips the
## integration tests (each says why: child processes, the whole pipeline on
## kfake, real-time windows, or over about 2 s). make test and CI run them all.
test-short:
	$(GO) test -race -count=1 -short work

vet: fmt-check
	$(GO) vet work

fmt:
	gofmt -w $$(git ls-files '*.go')

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## run: the whole pipeline in one process on embedded Kafka, Redis and a Heap
## stand-in, posting the fixture webhooks once (DEMO=0 to skip).
run:
	DEMO=$${DEMO:-1} $(GO) run ./services/stack

build:
	@mkdir -p bin
	for s in ingress mapper emitter stack; do CGO_ENABLED=0 $(GO) build -o bin/$$s ./services/$$s || exit 1; done

## bench: the performance harness (pkg/perf, BENCHMARKS.md): each stage run as
## its service's own process beside a floor measured in the same run; prints
## the table (and which Kafka and Redis it used), writes bench.json. Then the
## micro-benchmarks. PERF_PACING=30s shortens the pacing stage (default 2m);
## KAFKA_BROKERS and REDIS_URL pick the backends (default kfake, redis-server
## when installed, else miniredis); PERF_FLAGS passes flags (-stages, -records).
bench:
	@mkdir -p bin
	$(GO) build -o bin/perf ./pkg/perf/cmd/perf
	./bin/perf -json bench.json $(PERF_FLAGS)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 work | tee bench.out

## attack: the adversarial suite (pkg/adversary): the ingress binary, a fresh
## process per attack on kfake and redis-server (or KAFKA_BROKERS, REDIS_URL),
## under slow-body, slowloris, maximum-size-post and idle-connection attacks
## while signed webhooks flow at a steady rate; prints peak RSS, legitimate
## success and latency, and when the server closed the attack's connections;
## writes bin/attack.json. It reports only; ATTACK_FLAGS='-max-rss-mib 256
## -min-legit-success 0.99' makes it fail past bounds (-duration, -conns...).
attack:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -o bin/ingress ./services/ingress
	$(GO) build -o bin/adversary ./pkg/adversary/cmd/adversary
	./bin/adversary -ingress bin/ingress -json bin/attack.json $(ATTACK_FLAGS)

## fuzz: each parser of outside input, and the timestamp checks, for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseListWebhook$$' -fuzztime $(FUZZTIME) ./pkg/mailchimp
	$(GO) test -run '^$$' -fuzz '^FuzzMandrill$$' -fuzztime $(FUZZTIME) ./pkg/mailchimp
	$(GO) test -run '^$$' -fuzz '^FuzzEventTime$$' -fuzztime $(FUZZTIME) ./pkg/mailchimp
	$(GO) test -run '^$$' -fuzz '^FuzzActivityMember$$' -fuzztime $(FUZZTIME) ./pkg/mailchimp

## kafka: a real single-node Apache Kafka 4.x (KRaft) on 127.0.0.1:19092, from Maven Central.
kafka:
	.ci/kafka.sh start

kafka-stop:
	.ci/kafka.sh stop

ci:
	bash .ci/run

clean:
	rm -rf bin data bench.out bench.json
