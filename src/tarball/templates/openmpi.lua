-- Lmod modulefile for Open MPI {{openmpi_version}} (GCC {{gcc_version}}), written by slurm-factory.
-- Relocatable: it finds the unpacked tarball from its own location (<root>/modules/openmpi/<v>.lua)
-- and needs no LD_LIBRARY_PATH. OPAL_PREFIX tells Open MPI where its help files and components
-- moved to.
local modfile = myFileName()
local root = modfile:match("^(.*)/modules/openmpi/[^/]+%.lua$")
if root == nil then
  LmodError("openmpi: this modulefile must stay at <prefix>/modules/openmpi/ of the unpacked slurm-factory tarball; it is at " .. modfile)
end
local view = pathJoin(root, "view")

whatis("Name: openmpi")
whatis("Version: {{openmpi_version}}")
whatis("Description: Open MPI {{openmpi_version}} with Slurm support, built with GCC {{gcc_version}} by slurm-factory")
help([[
Open MPI {{openmpi_version}} (GCC {{gcc_version}}) from a relocatable slurm-factory tarball.
Launch with srun or mpirun. Headers are not shipped, so this module runs MPI programs but does
not compile them.
]])

conflict("openmpi")
family("mpi")

prepend_path("PATH", pathJoin(view, "bin"))
prepend_path("MANPATH", pathJoin(view, "share/man"))
setenv("MPI_HOME", view)
setenv("OPAL_PREFIX", view)
