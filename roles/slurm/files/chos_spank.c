/*
 * chos.so - Slurm SPANK plugin: run every task of a job inside its CHOS environment.
 *
 * In the task, just before Slurm execs the job's command (task_init runs as the user, after the command's path
 * is resolved), the plugin puts the launcher in the command's place and passes the original command name in
 * CHOS_JOB_ARGV0. The launcher runs `chos run -- CMD ARGS...`, which picks the environment like PDSF did:
 * $CHOS (sbatch --export=ALL,CHOS=name), else ~/.chos, else the node default. Slurm 22.05 has no call to
 * prepend arguments, so the command name is replaced in place: the arguments stay where they are.
 *
 * plugstack.conf:  required /usr/local/lib/slurm/chos.so launcher=/usr/local/libexec/magellan/chos-launch
 */
#include <string.h>
#include <unistd.h>
#include <slurm/spank.h>

SPANK_PLUGIN(chos, 1);

static char launcher[4096] = "/usr/local/libexec/magellan/chos-launch";

static int parse_args(int ac, char **av)
{
    for (int i = 0; i < ac; i++) {
        if (strncmp(av[i], "launcher=", 9) == 0 && strlen(av[i] + 9) < sizeof(launcher)) {
            strcpy(launcher, av[i] + 9);
        } else {
            slurm_error("chos: unknown plugin argument '%s' (known: launcher=PATH)", av[i]);
            return -1;
        }
    }
    return 0;
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
    (void)sp;
    return parse_args(ac, av);
}

int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
    int argc = 0;
    char **argv = NULL;

    (void)ac;
    (void)av;
    if (spank_get_item(sp, S_JOB_ARGV, &argc, &argv) != ESPANK_SUCCESS || argc < 1 || argv[0] == NULL)
        return 0;
    if (access(launcher, X_OK) != 0) {
        slurm_error("chos: launcher %s is not executable on this node; run the slurm role (playbooks/cluster.yml)",
                    launcher);
        return -1;
    }
    if (spank_setenv(sp, "CHOS_JOB_ARGV0", argv[0], 1) != ESPANK_SUCCESS) {
        slurm_error("chos: cannot set CHOS_JOB_ARGV0 for the task");
        return -1;
    }
    argv[0] = launcher;
    return 0;
}
