# imrt - build, test, bench, demo, install.
#
#   make            library (static + shared) and the imrt command
#   make test       every test program, once with 1 thread and once with all
#   make asan       the tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench      the benchmark suite (QUICK=1 for the short run)
#   make demo       plan the default phantom and print where the report is
#   make install    PREFIX=/usr/local DESTDIR= (headers, libraries, imrt, imrt.pc)
#   make deps       check the Debian packages and install missing ones
#   make MPI=1      also build-mpi/imrt-mpi, the distributed planner (docs/cluster.md)
#   make MPI=1 test-mpi   its tests under mpirun with 1, 2 and 3 processes
#   make fuzz       libFuzzer harnesses (clang) in build-fuzz/, each run FUZZ_TIME s
#
# Switches: NATIVE=1 (-march=native), WERROR=1 (warnings are errors),
# SAN=address,undefined (sanitizers), BUILD=dir (object folder), MPI=1
# (objects in build-mpi/; only engine/mpi_*.c see MPI: libimrt and imrt never do).

VERSION := 0.1.0
, := ,
PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build

CC      ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif

# First build in a folder: check the Debian packages (installing the missing
# ones when root) before pkg-config is asked for flags.
ifeq ($(wildcard $(BUILD)/.deps-ok),)
ifeq ($(filter clean deps uninstall,$(MAKECMDGOALS)),)
DEPS_RC := $(shell bash .ci/deps >&2; rc=$$?; [ $$rc -eq 0 ] && mkdir -p $(BUILD) && touch $(BUILD)/.deps-ok; echo $$rc)
ifneq ($(DEPS_RC),0)
$(error the Debian packages above are missing: install them and run make again)
endif
endif
endif

PKGS := openblas lapacke nlopt jansson matio cairo
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# Pin the OpenMP OpenBLAS at run time (Debian's alternatives may prefer the pthread build).
OPENBLAS_DIR := $(patsubst -L%,%,$(filter -L%,$(shell pkg-config --libs-only-L openblas 2>/dev/null)))
RPATH := $(if $(OPENBLAS_DIR),-Wl$(,)-rpath$(,)$(OPENBLAS_DIR))
NIFTI_CFLAGS := -I/usr/include/nifti
NIFTI_LIBS   := -lniftiio -lznz -lz
CMOCKA_LIBS  := $(shell pkg-config --libs cmocka 2>/dev/null)

ARCH := -march=x86-64-v2
ifeq ($(NATIVE),1)
ARCH := -march=native
endif

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wstrict-prototypes \
        -Wmissing-prototypes -Wdouble-promotion -fno-common
ifeq ($(WERROR),1)
WARN += -Werror
endif

OPT := -O3 $(ARCH) -g
ifeq ($(MPI),1)
BUILD := build-mpi
endif
ifneq ($(SAN),)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=$(SAN) -fno-sanitize-recover=all
BUILD := build-san$(if $(filter 1,$(MPI)),-mpi)
endif

# MPI (Open MPI from Debian: libopenmpi-dev, openmpi-bin): only engine/mpi_*.c
# are compiled with the wrapper's include flags (as system headers) and only
# imrt-mpi is linked with its libraries.
MPICC ?= mpicc
ifeq ($(MPI),1)
ifeq ($(shell command -v $(MPICC) 2>/dev/null),)
$(error MPI=1 needs $(MPICC): apt-get install libopenmpi-dev openmpi-bin)
endif
MPI_CFLAGS := $(patsubst -I%,-isystem %,$(shell $(MPICC) --showme:compile))
MPI_LIBS   := $(shell $(MPICC) --showme:link)
endif

CPPFLAGS += -Iinclude -Iengine -DIMRT_VERSION='"$(VERSION)"' -D_POSIX_C_SOURCE=200809L
CFLAGS   += -std=c11 -fopenmp -fPIC $(OPT) $(WARN) $(PKG_CFLAGS) $(NIFTI_CFLAGS) -MMD -MP
LDLIBS   := $(PKG_LIBS) $(NIFTI_LIBS) -lm
LDFLAGS  += -fopenmp $(RPATH) $(if $(SAN),-fsanitize=$(SAN))

# engine/cli*.c make the imrt command; engine/prog_NAME.c make helper programs;
# engine/mpi_*.c make imrt-mpi (MPI=1 only); every other engine/*.c goes into the library.
CLI_SRC  := $(wildcard engine/cli*.c)
PROG_SRC := $(wildcard engine/prog_*.c)
MPI_SRC  := $(wildcard engine/mpi_*.c)
LIB_SRC  := $(filter-out $(CLI_SRC) $(PROG_SRC) $(MPI_SRC),$(wildcard engine/*.c))
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC:= $(wildcard bench/bench_*.c)
BENCH_LIB:= $(filter-out $(BENCH_SRC),$(wildcard bench/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCHES  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
PROGS    := $(PROG_SRC:engine/prog_%.c=$(BUILD)/progs/%)
STATIC   := $(BUILD)/libimrt.a
SHARED   := $(BUILD)/libimrt.so
IMRT     := $(BUILD)/imrt
MPI_OBJ  := $(MPI_SRC:%.c=$(BUILD)/%.o)
IMRT_MPI := $(BUILD)/imrt-mpi

# V=1 shows full compile lines
ifeq ($(V),1)
Q :=
else
Q = @echo '  CC $<';
QL = @echo '  LD $@';
endif

.PHONY: all lib test asan bench benches demo install uninstall clean deps tests progs test-mpi \
        fuzz fuzzers fuzz-seeds
.DEFAULT_GOAL := all
.SECONDARY:

all: $(STATIC) $(SHARED) $(IMRT) $(PROGS) $(if $(filter 1,$(MPI)),$(IMRT_MPI))

lib: $(STATIC) $(SHARED)
progs: $(PROGS)

deps:
	@bash .ci/deps

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(SHARED): $(LIB_OBJ)
	$(QL)$(CC) -shared -Wl,-soname,libimrt.so.0 $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/engine/mpi_%.o: engine/mpi_%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(MPI_CFLAGS) $(CFLAGS) -c $< -o $@

$(IMRT_MPI): $(MPI_OBJ) $(STATIC)
	$(QL)$(CC) $(LDFLAGS) -o $@ $(MPI_OBJ) $(STATIC) $(LDLIBS) $(MPI_LIBS)

$(IMRT): $(CLI_OBJ) $(STATIC)
	$(QL)$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(STATIC) $(LDLIBS)

$(BUILD)/progs/%: $(BUILD)/engine/prog_%.o $(STATIC)
	@mkdir -p $(@D)
	$(QL)$(CC) $(LDFLAGS) -o $@ $< $(STATIC) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(STATIC)
	$(QL)$(CC) $(LDFLAGS) -o $@ $< $(STATIC) $(LDLIBS) $(CMOCKA_LIBS)

BENCH_LIB_OBJ := $(BENCH_LIB:%.c=$(BUILD)/%.o)
$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BENCH_LIB_OBJ) $(STATIC)
	$(QL)$(CC) $(LDFLAGS) -o $@ $< $(BENCH_LIB_OBJ) $(STATIC) $(LDLIBS)

tests: all $(TESTS)

# IMRT_TEST_THREADS lists the thread counts each test program runs with.
test: tests
	@BUILD=$(BUILD) IMRT=$(IMRT) bash tests/run.sh $(TESTS)

asan:
	$(MAKE) SAN=address,undefined test

# the distributed planner against the single-process one (needs MPI=1)
test-mpi: all $(BUILD)/tests/mpi/plan_diff
ifeq ($(MPI),1)
	@IMRT=$(IMRT) IMRT_MPI=$(IMRT_MPI) PLAN_DIFF=$(BUILD)/tests/mpi/plan_diff bash tests/mpi/run.sh
else
	@echo "make test-mpi needs MPI=1 (make MPI=1 test-mpi)"; exit 2
endif

benches: all $(BENCHES)

bench: benches
	@BUILD=$(BUILD) bash bench/run.sh $(if $(QUICK),--quick) $(BENCH_ARGS)

demo: all
	@bash phantoms/demo.sh $(IMRT)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/imrt \
	           $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/share/imrt/phantoms
	install -m 755 $(IMRT) $(DESTDIR)$(PREFIX)/bin/imrt
	install -m 644 $(STATIC) $(DESTDIR)$(PREFIX)/lib/libimrt.a
	install -m 755 $(SHARED) $(DESTDIR)$(PREFIX)/lib/libimrt.so.$(VERSION)
	ln -sf libimrt.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libimrt.so.0
	ln -sf libimrt.so.0 $(DESTDIR)$(PREFIX)/lib/libimrt.so
	install -m 644 include/imrt.h $(DESTDIR)$(PREFIX)/include/imrt.h
	install -m 644 include/imrt/*.h $(DESTDIR)$(PREFIX)/include/imrt/
	install -m 644 phantoms/*.json $(DESTDIR)$(PREFIX)/share/imrt/phantoms/ 2>/dev/null || true
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' engine/imrt.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/imrt.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/imrt $(DESTDIR)$(PREFIX)/lib/libimrt.* \
	      $(DESTDIR)$(PREFIX)/include/imrt.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/imrt.pc
	rm -rf $(DESTDIR)$(PREFIX)/include/imrt $(DESTDIR)$(PREFIX)/share/imrt

clean:
	rm -rf build build-san build-mpi build-san-mpi build-fuzz

# ---- fuzzing (docs/fuzzing.md) ---------------------------------------------
# The library is rebuilt with clang and the fuzzer's coverage hooks plus
# ASan/UBSan into build-fuzz/; each harness tests/fuzz/fuzz_NAME.c links it into
# build-fuzz/fuzz_NAME. `make fuzz` runs every harness for FUZZ_TIME seconds on
# a working copy of its seed corpus (build-fuzz/corpus/NAME; the seeds in
# tests/fuzz/corpus/NAME are only read). FUZZ_TARGETS picks harnesses,
# FUZZ_ARGS adds libFuzzer options (e.g. -jobs=2).
FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_TIME    ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
# clang's -Wdouble-promotion also flags `double x = float_value;`, which gcc
# (the project's compiler) accepts: that one warning is off for clang.
FUZZ_CFLAGS  := -std=c11 -fopenmp -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) $(WARN) \
                -Wno-double-promotion $(PKG_CFLAGS) $(NIFTI_CFLAGS) -MMD -MP
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_ALL     := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_BINS    := $(FUZZ_ALL:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)

$(FUZZ_BUILD)/engine/%.o: engine/%.c
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libimrt.a: $(FUZZ_LIB_OBJ)
	$(AR) rcs $@ $^

$(FUZZ_BUILD)/tests/fuzz/%.o: tests/fuzz/%.c
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/libimrt.a
	$(QL)$(FUZZ_CC) -fopenmp -fsanitize=fuzzer $(FUZZ_SAN) $(RPATH) -o $@ $< \
	    $(FUZZ_BUILD)/libimrt.a $(LDLIBS)

fuzzers: $(FUZZ_BINS)

# Rewrite the binary seeds (MAT and dij files) of tests/fuzz/corpus/.
$(FUZZ_BUILD)/gen_seeds: $(FUZZ_BUILD)/tests/fuzz/gen_seeds.o $(FUZZ_BUILD)/libimrt.a
	$(QL)$(FUZZ_CC) -fopenmp $(FUZZ_SAN) $(RPATH) -o $@ $< $(FUZZ_BUILD)/libimrt.a $(LDLIBS)

fuzz-seeds: $(FUZZ_BUILD)/gen_seeds
	$(FUZZ_BUILD)/gen_seeds tests/fuzz/corpus

fuzz: fuzzers
	@FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_TIME=$(FUZZ_TIME) bash tests/fuzz/run.sh $(FUZZ_ARGS) -- $(FUZZ_TARGETS)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
-include $(shell find $(FUZZ_BUILD) -name '*.d' 2>/dev/null)
