/*
 * engine/mpi_main.c - `imrt-mpi plan SPEC -o DIR`: the planning run of
 * `imrt plan` with the dij distributed over MPI processes (built only with
 * `make MPI=1` into build-mpi/imrt-mpi; docs/cluster.md).
 *
 * Every process loads the spec and builds the phantom (cheap, identical);
 * each computes and holds only its block of dij rows; the objective
 * evaluations gather row doses and sum gradients through the context's
 * communicator (engine/mpi_comm.c), so every process takes the same solver
 * steps. Rank 0 alone prints and writes the output folder, which has the
 * content of a single-process run. Per-rank dij sizes go to stderr and, with
 * --stats FILE, to a JSON file.
 *
 * Errors: a process that fails prints its message and aborts the job
 * (MPI_Abort with the exit code of `imrt plan`), since the others would
 * wait for it in a collective.
 */
#include "imrt.h"
#include "mpi_impl.h"
#include "util_impl.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define EXIT_USAGE 2

static const char usage[] =
    "usage: imrt-mpi plan SPEC -o DIR [--force] [--grid MM] [--threads N] [--log-every N]\n"
    "                [--max-memory SIZE] [--weights FILE] [--stats FILE] [--quiet]\n"
    "\n"
    "Run 'imrt plan' with the dose-influence matrix split over the MPI processes: each\n"
    "process computes and keeps a block of dij rows of about equal size; the optimiser's\n"
    "evaluations combine the blocks. Rank 0 writes the output folder (the same files as\n"
    "'imrt plan'). Start with mpirun or srun, one process per socket (docs/cluster.md).\n"
    "\n"
    "  -o, --output DIR   output folder (required); refused if it exists, unless --force\n"
    "  --force            replace an existing output folder of an earlier run\n"
    "  --grid MM          phantom grid spacing override, mm\n"
    "  --threads N        OpenMP threads per process (default: OMP_NUM_THREADS or all cores)\n"
    "  --log-every N      solver log line every N iterations (default 10)\n"
    "  --max-memory SIZE  memory budget of each process for its dij block, e.g. 8G\n"
    "                     (default: 70% of physical memory; processes sharing a node share it)\n"
    "  --weights FILE     also write the IMRT beamlet weights, one per line (rank 0)\n"
    "  --stats FILE       write per-rank dij rows, non-zeros, bytes and peak memory as JSON\n"
    "  --quiet            no log lines\n";

/* Exit codes of `imrt plan` (docs/conventions.md). */
static int exit_code(imrt_status st)
{
    switch (st) {
    case IMRT_OK:
        return 0;
    case IMRT_ERR_ARG:
    case IMRT_ERR_PARSE:
    case IMRT_ERR_RANGE:
    case IMRT_ERR_FORMAT:
        return 3;
    case IMRT_ERR_BUDGET:
    case IMRT_ERR_NOMEM:
        return 4;
    case IMRT_ERR_IO:
    case IMRT_ERR_EXISTS:
        return 5;
    default:
        return 1;
    }
}

static void log_line(void *user, const char *line)
{
    (void)user;
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

/* Print the failure of a process and end the whole job. */
_Noreturn static void die(int rank, imrt_status st)
{
    fprintf(stderr, "imrt-mpi: rank %d: %s\n", rank,
            imrt_last_error()[0] ? imrt_last_error() : imrt_status_str(st));
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, exit_code(st));
    exit(exit_code(st)); /* MPI_Abort does not return; this tells the compiler */
}

/* What each rank reports about its share of the work. */
enum { ST_BEGIN, ST_END, ST_NNZ, ST_BYTES, ST_RSS_KB, ST_THREADS, ST_N };

static imrt_status write_stats(const imrt_run *run, const int64_t *all, int size,
                               const char *path)
{
    json_t *root = json_object(), *ranks = json_array();
    if (!root || !ranks) {
        json_decref(root);
        json_decref(ranks);
        return imrt_error(IMRT_ERR_NOMEM, "cannot build the rank statistics");
    }
    const imrt_dij *d = run->dij;
    json_object_set_new(root, "ranks", json_integer(size));
    json_object_set_new(root, "rows", json_integer((json_int_t)d->nrows));
    json_object_set_new(root, "beamlets", json_integer(d->ncols));
    json_object_set_new(root, "nnz", json_integer((json_int_t)run->dij_nnz));
    json_object_set_new(root, "bytes_single",
                        json_integer((json_int_t)imrt_dij_bytes(d->nrows, d->ncols,
                                                                run->dij_nnz, d->nbeams)));
    for (int p = 0; p < size; p++) {
        const int64_t *r = all + (size_t)p * ST_N;
        json_array_append_new(
            ranks, json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:i}", "rank", p, "row_begin",
                             (json_int_t)r[ST_BEGIN], "row_end", (json_int_t)r[ST_END], "nnz",
                             (json_int_t)r[ST_NNZ], "dij_bytes", (json_int_t)r[ST_BYTES],
                             "peak_rss_kb", (json_int_t)r[ST_RSS_KB], "threads",
                             (int)r[ST_THREADS]));
    }
    json_object_set_new(root, "per_rank", ranks);
    json_object_set_new(root, "t_dij_s", json_real(run->t_dij));
    json_object_set_new(root, "t_optimize_s", json_real(run->t_optimize));
    json_object_set_new(root, "t_crt_s", json_real(run->t_crt));
    json_object_set_new(root, "t_total_s", json_real(run->t_total));
    json_object_set_new(root, "evaluations", json_integer(run->stats.evaluations));
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (!text)
        return imrt_error(IMRT_ERR_NOMEM, "cannot serialise the rank statistics");
    imrt_status st = imrt_io_write_file(path, text, strlen(text));
    free(text);
    return st;
}

int main(int argc, char **argv)
{
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "imrt-mpi: MPI_Init_thread failed\n");
        return 1;
    }
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"force", no_argument, NULL, 'f'},
                                         {"grid", required_argument, NULL, 'g'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"log-every", required_argument, NULL, 'l'},
                                         {"weights", required_argument, NULL, 'w'},
                                         {"stats", required_argument, NULL, 's'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"max-memory", required_argument, NULL, 'm'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *out_dir = NULL, *weights = NULL, *stats = NULL;
    int force = 0, quiet = 0, threads = 0, bad = 0;
    uint64_t max_memory = 0;
    imrt_run_options ro;
    imrt_run_options_default(&ro);
    if (argc < 2 || strcmp(argv[1], "plan") != 0) {
        if (rank == 0) {
            if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
                printf("%s", usage);
            else
                fprintf(stderr, "imrt-mpi: expected the command 'plan'\n%s", usage);
        }
        MPI_Finalize();
        return argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
                   ? 0
                   : EXIT_USAGE;
    }
    optind = 2;
    opterr = 0;
    int opt;
    double v;
    while (!bad && (opt = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            if (rank == 0)
                printf("%s", usage);
            MPI_Finalize();
            return 0;
        case 'o':
            out_dir = optarg;
            break;
        case 'f':
            force = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'w':
            weights = optarg;
            break;
        case 's':
            stats = optarg;
            break;
        case 'm':
            if (!imrt_parse_bytes(optarg, &max_memory) || max_memory < (1u << 20))
                bad = fprintf(stderr, "imrt-mpi plan: --max-memory '%s' must be a size of at least "
                                      "1M (e.g. 512M, 8G)\n", optarg);
            break;
        case 'g':
            if (!imrt_parse_double(optarg, 0.5, 20.0, &ro.grid_mm))
                bad = fprintf(stderr, "imrt-mpi plan: --grid '%s' must be in 0.5..20 mm\n",
                              optarg);
            break;
        case 't':
            if (!imrt_parse_double(optarg, 1, 4096, &v) || v != (int)v)
                bad = fprintf(stderr, "imrt-mpi plan: --threads '%s' must be an integer 1..4096\n",
                              optarg);
            else
                threads = (int)v;
            break;
        case 'l':
            if (!imrt_parse_double(optarg, 1, 1e6, &v))
                bad = fprintf(stderr, "imrt-mpi plan: --log-every '%s' must be 1..1e6\n", optarg);
            else
                ro.log_every = (int)v;
            break;
        default:
            bad = fprintf(stderr, "imrt-mpi plan: unknown option or missing value '%s'\n",
                          argv[optind - 1]);
        }
    }
    if (!bad && argc - optind != 1)
        bad = fprintf(stderr, "imrt-mpi plan: expected one SPEC file, got %d arguments\n",
                      argc - optind);
    if (!bad && !out_dir)
        bad = fprintf(stderr, "imrt-mpi plan: -o DIR is required\n");
    if (bad) {
        MPI_Finalize();
        return EXIT_USAGE;
    }
    const char *spec = argv[optind];

    /* refuse an existing folder before the work, not after (rank 0 decides) */
    int exists = 0;
    if (rank == 0) {
        FILE *probe = fopen(out_dir, "r");
        exists = probe != NULL && !force;
        if (probe)
            fclose(probe);
    }
    MPI_Bcast(&exists, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (exists) {
        if (rank == 0)
            fprintf(stderr, "imrt-mpi plan: output folder '%s' exists; use --force to replace "
                            "it or -o to choose another\n", out_dir);
        MPI_Finalize();
        return 5;
    }

    imrt_context *ctx = NULL;
    imrt_mpi_comm mc;
    imrt_comm comm;
    imrt_status st = imrt_context_create(&ctx);
    if (st == IMRT_OK && threads > 0)
        st = imrt_context_set_threads(ctx, threads);
    if (st == IMRT_OK && max_memory > 0)
        st = imrt_context_set_max_memory(ctx, max_memory);
    if (st == IMRT_OK)
        st = imrt_mpi_comm_init(&mc, MPI_COMM_WORLD, &comm);
    if (st == IMRT_OK)
        st = imrt_context_set_comm(ctx, &comm);
    if (st != IMRT_OK)
        die(rank, st);
    if (rank == 0 && !quiet) {
        ro.log = log_line;
        fprintf(stderr, "imrt-mpi: %d process(es) x %d thread(s)\n", size,
                imrt_context_threads(ctx));
    }

    imrt_run *run = NULL;
    st = imrt_run_plan(ctx, spec, &ro, &run);
    if (st != IMRT_OK)
        die(rank, st);

    /* per-rank share of the dij */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const imrt_dij *d = run->dij;
    int64_t mine[ST_N] = {d->row_begin, d->row_end, d->nnz,
                          (int64_t)imrt_dij_bytes(d->nrows, d->ncols, d->nnz, d->nbeams),
                          (int64_t)ru.ru_maxrss, imrt_context_threads(ctx)};
    int64_t *all = rank == 0 ? calloc((size_t)size * ST_N, sizeof *all) : NULL;
    if (rank == 0 && !all)
        die(rank, imrt_error(IMRT_ERR_NOMEM, "cannot gather the rank statistics"));
    MPI_Gather(mine, ST_N, MPI_INT64_T, all, ST_N, MPI_INT64_T, 0, MPI_COMM_WORLD);

    int rc = 0;
    if (rank == 0) {
        if (!quiet) {
            fprintf(stderr, "rank  rows                 nnz          dij MB   peak RSS MB\n");
            for (int p = 0; p < size; p++) {
                const int64_t *r = all + (size_t)p * ST_N;
                fprintf(stderr, "%4d  %8lld..%-8lld  %12lld  %9.2f  %9.1f\n", p,
                        (long long)r[ST_BEGIN], (long long)r[ST_END] - 1, (long long)r[ST_NNZ],
                        (double)r[ST_BYTES] / 1e6, (double)r[ST_RSS_KB] / 1024.0);
            }
        }
        st = imrt_run_write(run, out_dir, force);
        if (st == IMRT_OK && weights)
            st = imrt_run_write_weights(run, weights, "imrt-mpi", 17);
        if (st == IMRT_OK && stats)
            st = write_stats(run, all, size, stats);
        if (st != IMRT_OK) {
            fprintf(stderr, "imrt-mpi plan: %s\n", imrt_last_error());
            rc = exit_code(st);
        } else if (!quiet) {
            fprintf(stderr,
                    "total %.2f s (phantom %.2f, dij %.2f, optimisation %.2f, 3D-CRT %.2f, "
                    "outputs %.2f); %d evaluations; report: %s/report.html\n",
                    run->t_total + run->t_output, run->t_phantom, run->t_dij, run->t_optimize,
                    run->t_crt, run->t_output, run->stats.evaluations, out_dir);
        }
    }
    free(all);
    imrt_run_destroy(&run);
    imrt_context_destroy(&ctx);
    imrt_mpi_comm_free(&mc);
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc;
}
