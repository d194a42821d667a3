# Ghost Port — the one build entry. See README.md.
#   make            build the binaries into build/bin and their man pages into build/man
#   make programs   the binaries only (no help2man needed: deploy/Dockerfile)
#   make deps       install the missing Debian packages make and make demo need (scripts/deps.sh build)
#   make test       install missing deps (deps-test: those and the tests'), build, run every test
#   make demo       install missing deps (deps), start redis/bridge/house/upstream, send a request
#   make asan       build and run the tests under ASan+UBSan (into build-asan/)
#   make fuzz       build the libFuzzer targets with clang and run each briefly
#   make bench      benchmarks (tests/bench/README.md); QUICK=1: the small version (< 1 min);
#                   BENCH="redis scale": only the suites with these name prefixes
#   make install    the programs, man pages, systemd units, example configs and the CLI's bash
#                   completion under PREFIX (default /usr/local), into DESTDIR if given;
#                   make uninstall removes them
#   make deb        one Debian package per program into build/deb/ (ghostport-bridge,
#                   ghostport-house, ghostport-cli)
#   make format-check
#   make check-layers  the include rules between proto/, bridge/ and house/ (bridge/DESIGN.md)
CC ?= cc
CFLAGS ?= -O2 -g
BUILD ?= build
V ?= 0
QUICK ?= 0
BENCH ?=
Q := $(if $(filter 1,$(V)),,@)
# The one version number (--version, the .debs); the commit is added at build time, "unknown"
# outside a git checkout (a tarball: a parent directory's repository is not asked).
VERSION := 0.1.0
GIT_COMMIT := $(or $(shell [ -e .git ] && git describe --always --dirty 2>/dev/null),unknown)

override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes -MMD -MP \
	-Iproto
ifeq ($(CI),true)
override CFLAGS += -Werror
endif

PKGS_PROTO := libsodium libzstd
PKGS_NET := libwebsockets libuv hiredis libsodium libzstd libcurl jansson openssl
# The house links no libwebsockets and no hiredis (its ws/wss client is its own: house/tr_ws.c).
PKGS_HOUSE := libuv libsodium libzstd libcurl jansson openssl
PC = $(shell pkg-config $(1) $(2) 2>/dev/null)

PROTO_SRC := $(wildcard proto/*.c)
# proto/adapters/: the libuv glue of the shared runtime (the admin port's I/O, the daemons'
# signals, the L3 tunnel's TUN device and its rtnetlink client), outside the sans-I/O core and
# its library: its own archive, linked by the programs only (bridge/DESIGN.md, "Layers";
# hiredis keeps its event-loop adapters the same way).
UV_SRC := $(wildcard proto/adapters/*.c)
# One folder a program (bridge/DESIGN.md, "Code map"): the daemon, its admin port and dashboard,
# the CLI; bridge/store/ is the Redis side all of them share.
STORE_SRC := $(wildcard bridge/store/*.c)
BRIDGE_SRC := $(wildcard bridge/daemon/*.c bridge/admin/*.c bridge/front/*.c bridge/*.c) \
	$(filter-out bridge/store/registry.c bridge/store/rclient.c,$(STORE_SRC))
CLI_SRC := $(wildcard bridge/cli/*.c) bridge/store/registry.c bridge/store/rkeys.c bridge/store/rclient.c bridge/store/rurl.c \
	bridge/store/tlsrelay.c bridge/store/store_state.c bridge/store/store_views.c bridge/store/tunbook.c
# The admin port (HTTP server, request parsing, metrics) is in proto/, shared by both daemons;
# its libuv glue is proto/adapters/uv_admin.c (libgpuv.a).
HOUSE_SRC := $(wildcard house/*.c)
HARNESS_SRC := $(wildcard tests/harness/*.c) bridge/store/rkeys.c bridge/store/rclient.c bridge/store/uvredis.c \
	bridge/store/rurl.c bridge/store/tlsrelay.c
UNIT_SRC := $(wildcard tests/unit/*.c)
IT_SRC := $(wildcard tests/integration/*.c)
BENCH_SRC := $(wildcard tests/bench/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

PROTO_LIB := $(BUILD)/libgpproto.a
UV_LIB := $(BUILD)/libgpuv.a
BINS := $(BUILD)/bin/ghostport-bridge $(BUILD)/bin/ghostport-house $(BUILD)/bin/ghostport
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit_%,$(UNIT_SRC))
IT_BINS := $(patsubst tests/integration/%.c,$(BUILD)/tests/it_%,$(IT_SRC))
# tests/bench/<suite>.c are benchmark programs, <name>_tool.c helpers they start; both built
# into $(BUILD)/bench/ (scripts/bench.sh runs the suites, in order).
BENCH_BINS := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
# Test tools the integration tests exec from $(BUILD)/bin (tests/load: many houses in one process;
# tests/relay: the UDP impairment relay).
# Man pages: help2man on each program's --help and --version (scripts/gen-man.sh), dated by
# the last commit so that a rebuild writes the same page.
MANS := $(patsubst $(BUILD)/bin/%,$(BUILD)/man/%.1,$(BINS))
SOURCE_DATE_EPOCH ?= $(shell [ -e .git ] && git log -1 --format=%ct 2>/dev/null)
TOOL_BINS := $(BUILD)/bin/gp-loadhouses $(BUILD)/bin/gp-relay $(BUILD)/bin/gp-househost

# proto/http_req.c parses with http-parser (no pkg-config file; a pure byte parser).
LIBS_PROTO = $(call PC,--libs,$(PKGS_PROTO)) -lhttp_parser
# http-parser (the admin port) ships no pkg-config file.
LIBS_NET = $(call PC,--libs,$(PKGS_NET)) -lhttp_parser -lpthread
LIBS_HOUSE = $(call PC,--libs,$(PKGS_HOUSE)) -lhttp_parser -lpthread
CFLAGS_NET = $(call PC,--cflags,$(PKGS_NET))

.PHONY: FORCE all programs man deps deps-test install install-bridge install-house install-cli \
	uninstall deb test unit integration asan fuzz bench demo clean format format-check check-layers
all: $(BINS) $(MANS)
programs: $(BINS)
man: $(MANS)

# Debian packages (scripts/deps.sh): deps what make, make demo, make install and make deb need;
# deps-test those and what the tests, fuzzers and benchmarks add.
deps:
	$(Q)./scripts/deps.sh build

deps-test:
	$(Q)./scripts/deps.sh test

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC $<")
	$(Q)$(CC) $(CFLAGS) $(CFLAGS_NET) -c $< -o $@

$(PROTO_LIB): $(call obj,$(PROTO_SRC))
	@mkdir -p $(dir $@)
	$(Q)$(AR) rcs $@ $^

# Listed before $(PROTO_LIB) on a link line: the adapters call into it.
$(UV_LIB): $(call obj,$(UV_SRC))
	@mkdir -p $(dir $@)
	$(Q)$(AR) rcs $@ $^

# The dashboard (bridge/admin/web/*) compiled into the bridge: br_web_asset() in a generated file,
# regenerated when a web file changes (bridge/admin/ADMIN.md, scripts/embed-web.py).
WEB_OBJ := $(BUILD)/obj/gen/web_assets.o
$(BUILD)/gen/web_assets.c: scripts/embed-web.py bridge/admin/web $(wildcard bridge/admin/web/*)
	@mkdir -p $(dir $@)
	$(Q)python3 scripts/embed-web.py bridge/admin/web $@

$(WEB_OBJ): $(BUILD)/gen/web_assets.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# gp_version (proto/version.h): rewritten only when its text changes (a commit, a tree turning
# dirty), so only then do the three programs relink; linked into them alone. The scratch file
# is per process: make deb's sub-makes run this rule side by side.
VERSION_OBJ := $(BUILD)/obj/gen/version.o
$(BUILD)/gen/version.c: FORCE
	@mkdir -p $(dir $@)
	@t=$@.$$$$; printf '#include "version.h"\nconst char gp_version[] = "%s (git %s)";\n' \
		'$(VERSION)' '$(GIT_COMMIT)' >$$t && if cmp -s $$t $@; then rm -f $$t; else mv $$t $@; fi

$(VERSION_OBJ): $(BUILD)/gen/version.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

FORCE:

$(BUILD)/man/%.1: $(BUILD)/bin/% scripts/gen-man.sh
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  MAN $@")
	$(Q)$(if $(SOURCE_DATE_EPOCH),SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH)) ./scripts/gen-man.sh $< $@

$(BUILD)/bin/ghostport-bridge: $(call obj,$(BRIDGE_SRC)) $(WEB_OBJ) $(VERSION_OBJ) $(UV_LIB) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LIBS_NET) -lm

$(BUILD)/bin/ghostport: $(call obj,$(CLI_SRC)) $(VERSION_OBJ) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LIBS_NET) $(or $(call PC,--libs,ncursesw),-lncursesw) -lm

$(BUILD)/bin/ghostport-house: $(call obj,$(HOUSE_SRC)) $(VERSION_OBJ) $(UV_LIB) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LIBS_HOUSE) -lm

# Many houses for fault tests and benchmarks: house/'s code (without its main.c) as well. Both
# many-houses tools share tests/load/inproc.c (house defaults, the in-process executor).
$(BUILD)/bin/gp-loadhouses: $(BUILD)/obj/tests/load/loadhouses.o $(BUILD)/obj/tests/load/inproc.o \
		$(call obj,bridge/store/rurl.c bridge/store/rclient.c bridge/store/rkeys.c bridge/store/tlsrelay.c) \
		$(call obj,$(filter-out house/main.c,$(HOUSE_SRC))) $(UV_LIB) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LIBS_NET) -lm

# Many real houses (house/'s code, without its main.c) in one process.
$(BUILD)/bin/gp-househost: $(BUILD)/obj/tests/load/househost.o $(BUILD)/obj/tests/load/inproc.o \
		$(call obj,$(filter-out house/main.c,$(HOUSE_SRC))) $(UV_LIB) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LIBS_NET) -lm

$(BUILD)/bin/gp-relay: $(BUILD)/obj/tests/relay/relay.o $(PROTO_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LIBS_NET) -lm

$(BUILD)/tests/unit_%: $(BUILD)/obj/tests/unit/%.o $(PROTO_LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -o $@ $(filter-out $(PROTO_LIB),$^) $(PROTO_LIB) -lcriterion $(LIBS_PROTO) \
		$(UNIT_LIBS) -lm

# The house's replay cache is pure bookkeeping: its unit test links it alone.
$(BUILD)/tests/unit_cache: $(BUILD)/obj/house/cache.o
# The journal's codec and cache rebuild are pure too (the file side, journal_file.c, is not).
$(BUILD)/tests/unit_journal: $(BUILD)/obj/house/journal.o $(BUILD)/obj/house/cache.o
# The house's tunnel core, through a fake transport and executor (no sockets, lws or curl).
$(BUILD)/tests/unit_tunnel: $(BUILD)/obj/tests/unit/tunnel.o $(call obj,house/tunnel.c house/exchange.c \
		house/zstate.c house/cache.c house/journal.c house/journal_file.c house/streams.c \
		house/streams_svc.c house/tls.c house/l3.c) $(UV_LIB) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -o $@ $(filter-out $(PROTO_LIB),$^) $(PROTO_LIB) -lcriterion \
		$(LIBS_PROTO) -luv -lssl -lcrypto -lm
# The house's TCP streams (house/streams.c, streams_svc.c; TLS to https:// upstreams:
# house/tls.c) on a real loop against loopback services.
$(BUILD)/tests/unit_house_streams: $(call obj,house/streams.c house/streams_svc.c house/zstate.c house/tls.c)
$(BUILD)/tests/unit_house_streams: UNIT_LIBS := -luv -lssl -lcrypto
# The house's request checks (path normalisation, header names and values).
$(BUILD)/tests/unit_reqcheck: $(BUILD)/obj/house/reqcheck.o
# The dashboard's files as embedded in the bridge.
$(BUILD)/tests/unit_web_assets: $(WEB_OBJ)
# The JSON log line (proto/logjson.c): every line it writes is parsed by jansson.
$(BUILD)/tests/unit_logjson: UNIT_LIBS := -ljansson
# The admin port's server without its I/O, fed bytes by a fake glue (jansson: the reference
# for its JSON errors).
$(BUILD)/tests/unit_admin_http: UNIT_LIBS := -ljansson
# The signals both daemons watch (proto/adapters/uv_signals.c), raised at the test on a real loop.
$(BUILD)/tests/unit_uv_signals: $(UV_LIB)
$(BUILD)/tests/unit_uv_signals: UNIT_LIBS := -luv
# The L3 tunnel's TUN device and its rtnetlink client (proto/adapters/uv_tun.c, rtnl.c) against
# the real kernel, each test in a network namespace of its own (root; skipped otherwise).
$(BUILD)/tests/unit_uv_tun: $(UV_LIB)
$(BUILD)/tests/unit_uv_tun: UNIT_LIBS := -luv
# The bridge's pure checks of producers' entries and houses' responses.
$(BUILD)/tests/unit_entry: $(BUILD)/obj/bridge/daemon/entry.o
$(BUILD)/tests/unit_entry: UNIT_LIBS := -ljansson -lhiredis
# The HTTP front door's pure parts: routes, tokens, credentials, hop-by-hop headers.
$(BUILD)/tests/unit_froute: $(BUILD)/obj/bridge/front/froute.o
# The Redis address parser (bridge/store/rurl.c) is pure.
$(BUILD)/tests/unit_rurl: $(BUILD)/obj/bridge/store/rurl.o
# The CLI's escaping of control characters in what it prints.
$(BUILD)/tests/unit_cli_esc: $(BUILD)/obj/bridge/cli/cli_esc.o
# The model of `ghostport top` (rates, sorting, formats) is pure; houses' states as the
# store's parser leaves them (gp_state_init).
$(BUILD)/tests/unit_cli_top: $(BUILD)/obj/bridge/cli/cli_top_model.o $(BUILD)/obj/bridge/store/store_state.o
# The request history's buckets, percentiles, records and parser (bridge/store/store_hist.c).
$(BUILD)/tests/unit_hist: $(BUILD)/obj/bridge/store/store_hist.o
$(BUILD)/tests/unit_hist: UNIT_LIBS := -lhiredis -ljansson
# The Redis key layout (pure names), checked against README.md's table.
$(BUILD)/tests/unit_rkeys: $(BUILD)/obj/bridge/store/rkeys.o
# The store's parsers of what Redis holds: the live state, house hash, bridge stats, recent list.
$(BUILD)/tests/unit_store: $(BUILD)/obj/bridge/store/store_state.o $(BUILD)/obj/bridge/store/store_views.o \
		$(BUILD)/obj/bridge/store/tunbook.o
$(BUILD)/tests/unit_store: UNIT_LIBS := -lhiredis -ljansson
# The bridge's request/reply core on a fake house, a fake Redis and a virtual clock.
$(BUILD)/tests/unit_reqcore: $(BUILD)/obj/tests/unit/reqcore.o $(call obj,bridge/daemon/reqcore.c \
		bridge/store/redis.c bridge/daemon/entry.c bridge/store/rkeys.c bridge/store/tlsrelay.c \
		bridge/store/uvredis.c) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -o $@ $(filter-out $(PROTO_LIB),$^) $(PROTO_LIB) -lcriterion \
		$(LIBS_PROTO) -lhiredis -ljansson -luv -lssl -lcrypto -lm

# The daemon's table of held houses and its fencing/ctl decisions (bridge/daemon/htable.c).
$(BUILD)/tests/unit_htable: $(BUILD)/obj/bridge/daemon/htable.o
# The daemon's connection layer (bridge/daemon/conn.c) on a fake transport and fake hooks.
$(BUILD)/tests/unit_conn: $(BUILD)/obj/tests/unit/conn.o $(call obj,bridge/daemon/conn.c) \
		$(PROTO_LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -o $@ $(filter-out $(PROTO_LIB),$^) $(PROTO_LIB) -lcriterion \
		$(LIBS_PROTO) -luv -lm

# The bridge's side of the L3 tunnel (bridge/daemon/l3.c) in a network namespace of its own,
# on a fake house connection (conn.c's queue; Redis is linked, never reached).
$(BUILD)/tests/unit_bridge_l3: $(BUILD)/obj/tests/unit/bridge_l3.o $(call obj,bridge/daemon/l3.c \
		bridge/daemon/conn.c bridge/store/rkeys.c bridge/store/rdb.c bridge/store/redis.c \
		bridge/store/uvredis.c bridge/store/tlsrelay.c) $(UV_LIB) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -o $@ $(filter-out $(PROTO_LIB),$^) $(PROTO_LIB) -lcriterion \
		$(LIBS_PROTO) -lhiredis -lssl -lcrypto -luv -lpthread -lm

# Two of the house listener's flood guards (bridge/daemon/flood.c) side by side in one process.
$(BUILD)/tests/unit_flood: $(BUILD)/obj/tests/unit/flood.o $(call obj,bridge/daemon/flood.c) \
		$(PROTO_LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -o $@ $(filter-out $(PROTO_LIB),$^) $(PROTO_LIB) -lcriterion \
		$(LIBS_PROTO) -lwebsockets -luv -lm

$(BUILD)/tests/it_%: $(BUILD)/obj/tests/integration/%.o $(call obj,$(HARNESS_SRC)) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -o $@ $^ -lcriterion $(LIBS_NET) -lm -lpthread

# The browser test writes a day of request history with the bridge's buckets (store_hist.c).
$(BUILD)/tests/it_web: $(BUILD)/obj/bridge/store/store_hist.o

# Benchmarks report, they do not assert: they take the harness without Criterion's parts
# (world.c, netns_test.c).
BENCH_HARNESS_SRC := $(filter-out tests/harness/world.c tests/harness/netns_test.c,$(HARNESS_SRC))
$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(call obj,$(BENCH_HARNESS_SRC)) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LIBS_NET) -lm
# Objects named only by pattern rules are intermediate: keep them (no rebuild on every run).
.SECONDARY: $(call obj,$(BENCH_SRC) $(HARNESS_SRC))

# Tests: the runner prints each binary's result and closes with "N passed, N failed".
# The .debs are built first: it_pkg installs them in a throw-away root (tests/integration/pkg.c).
# In CI (CI=true) formatting is checked too, as are warnings (-Werror above).
# The same run ends with a named subset once more against a Redis with a password and TLS
# only (every program logs in and goes through the TLS relay; tests/harness/harness.h,
# GP_TEST_REDIS): every program that talks to Redis — the bridge (end-to-end, admin, reply
# keys, janitor), the CLI and top, the README's producers (redis-cli, Python, Node) —, a
# Redis Cluster (tls-cluster), and the ACL users of deploy/redis-users.acl (acl.c: bridge,
# CLI admin and viewer, producers, each as its own user, behind the password and TLS).
# Then the quick benchmarks run, so that they cannot rot (they report, they never fail on a
# timing; they fail only when they could not run).
REDIS_SECURE_MODE ?= auth+tls
# Against the Redis with a password, ACL users and TLS, the suites' paths through Redis: the
# front door's requests, WebSockets, failover and janitor answers, not its HTTP-side tests
# (slow clients, header limits, token files: the same whatever Redis is), nor the janitor's
# cost measurement; each of those runs once, in the plain pass (`make test`'s budget).
REDIS_SECURE_FRONT = front/@(get_post_service_and_404|host_routing_and_chunked_stream|many_at_once|websocket_echo_through_the_front_door|websocket_survives_kill9*|request_survives_kill9*|house_nobody_holds*|https_with_the_bridges_certificate)
REDIS_SECURE_SUITES = $(BUILD)/tests/it_e2e $(BUILD)/tests/it_cli $(BUILD)/tests/it_admin \
	'$(BUILD)/tests/it_front=$(REDIS_SECURE_FRONT)' \
	$(BUILD)/tests/it_fault=fault/cluster_cli_end_to_end '$(BUILD)/tests/it_readme=readme/*_example' \
	'$(BUILD)/tests/it_top=top/once*' '$(BUILD)/tests/it_top=top/house*' $(BUILD)/tests/it_replykey \
	'$(BUILD)/tests/it_janitor=janitor/!(cost_note*)' $(BUILD)/tests/it_acl $(BUILD)/tests/it_cli_stream $(BUILD)/tests/it_stream
# The include rules of bridge/DESIGN.md ("Layers"), then the check's own test: each include
# it plants in a copy of the tree must fail it (both well under a second).
check-layers:
	$(Q)./scripts/check-layers.py
	$(Q)./scripts/check-layers.py --self-test

test: deps-test check-layers $(if $(filter true,$(CI)),format-check)
	$(Q)$(MAKE) --no-print-directory all deb $(TOOL_BINS) $(UNIT_BINS) $(IT_BINS) \
		$(BUILD)/bench/linkem_tool
	$(Q)BUILD=$(BUILD) ./scripts/run-tests.sh $(UNIT_BINS) $(IT_BINS) \
		--env GP_TEST_REDIS=$(REDIS_SECURE_MODE) $(REDIS_SECURE_SUITES)
	$(Q)$(MAKE) --no-print-directory bench QUICK=1

unit: $(UNIT_BINS)
	$(Q)BUILD=$(BUILD) ./scripts/run-tests.sh $(UNIT_BINS)

integration: all deb $(TOOL_BINS) $(IT_BINS)
	$(Q)BUILD=$(BUILD) ./scripts/run-tests.sh $(IT_BINS) \
		--env GP_TEST_REDIS=$(REDIS_SECURE_MODE) $(REDIS_SECURE_SUITES)

ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
asan: deps-test
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan CFLAGS="$(ASAN_FLAGS)" test

# libFuzzer targets: tests/fuzz/fuzz_<name>.c, built with clang against the proto sources.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(FUZZ_SRC))
FUZZ_TIME ?= 30
# The entry fuzzer also takes the bridge's pure entry parser, hiredis's reader and jansson.
build-fuzz/fuzz_entry: tests/fuzz/fuzz_entry.c bridge/daemon/entry.c $(PROTO_SRC)
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Iproto -Ibridge/daemon -fsanitize=fuzzer,address,undefined \
		-o $@ $^ $(call PC,--libs,$(PKGS_PROTO) hiredis jansson) -lhttp_parser -lm
# The journal fuzzer decodes records and rebuilds the house's replay cache from them.
build-fuzz/fuzz_journal: tests/fuzz/fuzz_journal.c house/journal.c house/cache.c $(PROTO_SRC)
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Iproto -Ihouse -fsanitize=fuzzer,address,undefined \
		-o $@ $^ $(call PC,--libs,$(PKGS_PROTO)) -lhttp_parser -lm
# The house's request checks: a path joined to a base never leaves it.
build-fuzz/fuzz_reqcheck: tests/fuzz/fuzz_reqcheck.c house/reqcheck.c
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Ihouse -fsanitize=fuzzer,address,undefined -o $@ $^
# Key names read back from Redis (SCAN, keyspace channels) -> house ids.
build-fuzz/fuzz_rkeys: tests/fuzz/fuzz_rkeys.c bridge/store/rkeys.c
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Ibridge/store -fsanitize=fuzzer,address,undefined -o $@ $^
# What the CLI reads back from Redis (house, state and stats hashes, recent requests), as RESP
# through hiredis's reader, into the store's pure parsers.
build-fuzz/fuzz_registry: tests/fuzz/fuzz_registry.c bridge/store/store_views.c bridge/store/store_state.c \
		bridge/store/tunbook.c proto/ippkt.c proto/gp.c
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Iproto -Ibridge/store -fsanitize=fuzzer,address,undefined \
		-o $@ $^ $(call PC,--libs,hiredis jansson) -lm
# What the CLI prints of others' text, escaped (bridge/cli/cli_esc.c): pure, no libraries.
build-fuzz/fuzz_cli_esc: tests/fuzz/fuzz_cli_esc.c bridge/cli/cli_esc.c
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Ibridge -fsanitize=fuzzer,address,undefined -o $@ $^
# The JSON log line (--log-format json) of any key=value text, parsed back by jansson.
build-fuzz/fuzz_logjson: tests/fuzz/fuzz_logjson.c proto/logjson.c proto/logger.c
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Iproto -fsanitize=fuzzer,address,undefined -o $@ $^ \
		$(call PC,--libs,jansson)
# Arbitrary bytes as the body of the JSON API's POST /api/houses.
build-fuzz/fuzz_api_body: tests/fuzz/fuzz_api_body.c bridge/admin/api_body.c bridge/store/store_state.c \
		bridge/store/tunbook.c $(PROTO_SRC)
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Iproto -Ibridge -Ibridge/admin -fsanitize=fuzzer,address,undefined \
		-o $@ $^ $(call PC,--libs,$(PKGS_PROTO) hiredis jansson) -lhttp_parser -lm
# A house's hashes as RESP, parsed and written as the JSON API's view of it.
build-fuzz/fuzz_api_house: tests/fuzz/fuzz_api_house.c bridge/admin/api_body.c bridge/store/store_state.c \
		bridge/store/tunbook.c $(PROTO_SRC)
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Iproto -Ibridge -Ibridge/admin -fsanitize=fuzzer,address,undefined \
		-o $@ $^ $(call PC,--libs,$(PKGS_PROTO) hiredis jansson) -lhttp_parser -lm
# A history hash as Redis might hold it (RESP or one raw value), parsed and written as the
# JSON API's answer (bridge/store/store_hist.c).
build-fuzz/fuzz_hist: tests/fuzz/fuzz_hist.c bridge/store/store_hist.c proto/buf.c
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Iproto -Ibridge/store -fsanitize=fuzzer,address,undefined \
		-o $@ $^ $(call PC,--libs,hiredis jansson) -lm
# Redis addresses from flags, environment and config files (the password file is read with
# proto/conf.c's gp_read_file, hence the proto sources).
build-fuzz/fuzz_rurl: tests/fuzz/fuzz_rurl.c bridge/store/rurl.c $(PROTO_SRC)
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Iproto -Ibridge/store -fsanitize=fuzzer,address,undefined -o $@ $^ \
		$(call PC,--libs,$(PKGS_PROTO)) -lhttp_parser -lm
# The HTTP front door's routes (target, Host), Authorization header and header checks.
build-fuzz/fuzz_froute: tests/fuzz/fuzz_froute.c bridge/front/froute.c proto/gp.c
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Iproto -fsanitize=fuzzer,address,undefined -o $@ $^ \
		$(call PC,--libs,libsodium)
# The front door's token file (--http-token-file) and the check against it.
build-fuzz/fuzz_ftokens: tests/fuzz/fuzz_ftokens.c bridge/front/froute.c proto/gp.c
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Iproto -fsanitize=fuzzer,address,undefined -o $@ $^ \
		$(call PC,--libs,libsodium)
# Arbitrary bytes as HTTP requests on the admin port, split at arbitrary points.
build-fuzz/fuzz_admin_http: tests/fuzz/fuzz_admin_http.c proto/http_req.c proto/admin_http.c
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Iproto -fsanitize=fuzzer,address,undefined -o $@ $^ \
		-lhttp_parser
# The bridge's channel messages (fence, ctl) against its table of held houses.
build-fuzz/fuzz_htable: tests/fuzz/fuzz_htable.c bridge/daemon/htable.c $(PROTO_SRC)
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Iproto -fsanitize=fuzzer,address,undefined -o $@ $^ \
		$(call PC,--libs,$(PKGS_PROTO))-lhttp_parser -lm
build-fuzz/%: tests/fuzz/%.c $(PROTO_SRC)
	@mkdir -p $(dir $@)
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Iproto -fsanitize=fuzzer,address,undefined -o $@ $^ \
		$(call PC,--libs,$(PKGS_PROTO)) -lhttp_parser -lm
fuzz: deps-test $(FUZZ_BINS)
	$(Q)for f in $(FUZZ_BINS); do \
		n=$$(basename $$f); mkdir -p build-fuzz/corpus/$$n; \
		echo "fuzz: $$n for $(FUZZ_TIME)s"; \
		$$f -max_total_time=$(FUZZ_TIME) build-fuzz/corpus/$$n tests/fuzz/seeds/$$n \
			>build-fuzz/$$n.log 2>&1; rc=$$?; tail -3 build-fuzz/$$n.log; \
		[ $$rc -eq 0 ] || { echo "fuzz: $$n failed (rc=$$rc), see build-fuzz/$$n.log"; exit 1; }; \
	done

# Every suite under tests/bench, one at a time, then the summary table (tests/bench/README.md).
# A suite that does not build is reported as failed by the runner; the others still run.
bench: deps-test
	$(Q)$(MAKE) --no-print-directory all $(TOOL_BINS)
	$(Q)$(MAKE) --no-print-directory -k $(BENCH_BINS) || echo "bench: some benchmarks did not build" >&2
	$(Q)BUILD=$(BUILD) QUICK=$(QUICK) BENCH='$(BENCH)' ./scripts/bench.sh

demo: deps all
	$(Q)DEMO_KEEP=$(KEEP) ./scripts/demo.sh

# --- install -------------------------------------------------------------------------------
# One target per program, so that each .deb is one staged install (make deb below).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/ghostport
UNITDIR ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
INSTALL ?= install
# The units name /usr/local/bin/ghostport-* and /usr/local/share/doc/ghostport (the default
# PREFIX): installed, they name BINDIR and DOCDIR.
UNIT_SED = sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/share/doc/ghostport|$(DOCDIR)|g'
# $(1): the program; its binary, man page and the README.
define install_program
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR)
	$(INSTALL) -m 755 $(BUILD)/bin/$(1) $(DESTDIR)$(BINDIR)/$(1)
	$(INSTALL) -m 644 $(BUILD)/man/$(1).1 $(DESTDIR)$(MANDIR)/man1/$(1).1
	$(INSTALL) -m 644 README.md $(DESTDIR)$(DOCDIR)/README.md
endef
# $(1): the daemon's unit, $(2): its example config files (deploy/).
define install_daemon
	$(INSTALL) -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)/examples
	$(UNIT_SED) deploy/$(1).service >$(DESTDIR)$(UNITDIR)/$(1).service.tmp
	chmod 644 $(DESTDIR)$(UNITDIR)/$(1).service.tmp
	mv $(DESTDIR)$(UNITDIR)/$(1).service.tmp $(DESTDIR)$(UNITDIR)/$(1).service
	$(INSTALL) -m 644 $(addprefix deploy/,$(2)) $(DESTDIR)$(DOCDIR)/examples/
endef
install: install-bridge install-house install-cli

install-bridge: $(BUILD)/bin/ghostport-bridge $(BUILD)/man/ghostport-bridge.1
	$(call install_program,ghostport-bridge)
	$(call install_daemon,ghostport-bridge,bridge.conf redis.conf redis-users.acl)

install-house: $(BUILD)/bin/ghostport-house $(BUILD)/man/ghostport-house.1
	$(call install_program,ghostport-house)
	$(call install_daemon,ghostport-house,house.conf)

install-cli: $(BUILD)/bin/ghostport $(BUILD)/man/ghostport.1
	$(call install_program,ghostport)
	$(INSTALL) -d $(DESTDIR)$(BASHCOMPDIR)
	$(INSTALL) -m 644 deploy/ghostport.bash-completion $(DESTDIR)$(BASHCOMPDIR)/ghostport

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,ghostport-bridge ghostport-house ghostport) \
		$(addprefix $(DESTDIR)$(MANDIR)/man1/,ghostport-bridge.1 ghostport-house.1 ghostport.1) \
		$(addprefix $(DESTDIR)$(UNITDIR)/,ghostport-bridge.service ghostport-house.service) \
		$(addprefix $(DESTDIR)$(DOCDIR)/examples/,bridge.conf redis.conf redis-users.acl house.conf) \
		$(DESTDIR)$(DOCDIR)/README.md $(DESTDIR)$(BASHCOMPDIR)/ghostport
	rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null || true

# --- Debian packages -------------------------------------------------------------------------
# One per program, each a staged install-<program> under /usr (units in /lib/systemd/system, as
# bookworm's packages have them) finished by scripts/deb.sh (conffile, maintainer scripts,
# Depends from dpkg-shlibdeps) and built with dpkg-deb: build/deb/<package>_<version>_<arch>.deb.
# DEB_VERSION defaults to VERSION (the binaries' --version names the commit).
DEB_VERSION ?= $(VERSION)
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
DEB_DIR := $(BUILD)/deb
deb_file = $(DEB_DIR)/ghostport-$(1)_$(DEB_VERSION)_$(DEB_ARCH).deb
DEBS := $(foreach p,bridge house cli,$(call deb_file,$(p)))
deb: $(DEBS)
# $(1): the package's suffix and install target (bridge, house, cli), $(2): its program,
# $(3): the other files it installs.
define deb_rule
$(call deb_file,$(1)): $(BUILD)/bin/$(2) $(BUILD)/man/$(2).1 $(3) README.md scripts/deb.sh Makefile
	@echo "  DEB $$@"
	$(Q)rm -rf $(DEB_DIR)/root/ghostport-$(1)
	$(Q)$$(MAKE) --no-print-directory -s install-$(1) DESTDIR=$(abspath $(DEB_DIR)/root/ghostport-$(1)) \
		PREFIX=/usr UNITDIR=/lib/systemd/system DOCDIR=/usr/share/doc/ghostport-$(1) >/dev/null
	$(Q)./scripts/deb.sh ghostport-$(1) $(DEB_DIR)/root/ghostport-$(1) $(DEB_VERSION) $(DEB_DIR)
endef
$(eval $(call deb_rule,bridge,ghostport-bridge,deploy/ghostport-bridge.service deploy/bridge.conf \
	deploy/redis.conf deploy/redis-users.acl))
$(eval $(call deb_rule,house,ghostport-house,deploy/ghostport-house.service deploy/house.conf))
$(eval $(call deb_rule,cli,ghostport,deploy/ghostport.bash-completion))

FORMAT_FILES = $(wildcard proto/*.[ch] proto/*/*.[ch] bridge/*.[ch] bridge/*/*.[ch] house/*.[ch] tests/*/*.[ch])
format:
	$(Q)clang-format -i $(FORMAT_FILES)

format-check:
	$(Q)clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
