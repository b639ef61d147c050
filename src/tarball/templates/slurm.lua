-- Lmod modulefile for Slurm {{slurm_version}} (GCC {{gcc_version}}), written by slurm-factory.
-- Relocatable: it finds the unpacked tarball from its own location (<root>/modules/slurm/<v>.lua)
-- and needs no LD_LIBRARY_PATH: every binary finds its libraries through $ORIGIN RPATHs.
local modfile = myFileName()
local root = modfile:match("^(.*)/modules/slurm/[^/]+%.lua$")
if root == nil then
  LmodError("slurm: this modulefile must stay at <prefix>/modules/slurm/ of the unpacked slurm-factory tarball; it is at " .. modfile)
end
local view = pathJoin(root, "view")

whatis("Name: slurm")
whatis("Version: {{slurm_version}}")
whatis("Description: Slurm workload manager {{slurm_version}} built with GCC {{gcc_version}} by slurm-factory")
help([[
Slurm {{slurm_version}} (GCC {{gcc_version}}) from a relocatable slurm-factory tarball.

Sets PATH, MANPATH, SLURM_ROOT and SLURM_CONF. SLURM_CONF keeps a value you set before
loading; otherwise it is /etc/slurm/slurm.conf (set SLURM_FACTORY_SLURM_CONF to choose
another default).

Slurm compiles its prefix, sbin directory and default plugin directory in; data/install.sh
rewrote them to this location (]] .. pathJoin(view, "lib/slurm") .. [[), so no slurm.conf
setting is needed for them. After moving the directory, run data/install.sh again.
]])

conflict("slurm")
family("workloadmanager")

prepend_path("PATH", pathJoin(view, "bin"))
prepend_path("PATH", pathJoin(view, "sbin"))
prepend_path("MANPATH", pathJoin(view, "share/man"))
setenv("SLURM_ROOT", view)
pushenv("SLURM_CONF", os.getenv("SLURM_CONF") or os.getenv("SLURM_FACTORY_SLURM_CONF") or "/etc/slurm/slurm.conf")
