# Opens RUN_DIR/output.xdmf with VTK's XDMF reader (the reader ParaView uses) and prints
# the time steps, the mesh and the cell arrays of the last step. Needs `pip install vtk`.
# Usage: python3 scripts/check_xdmf_vtk.py RUN_DIR/output.xdmf
import sys, vtk
from vtk.util.numpy_support import vtk_to_numpy
path = sys.argv[1]
for cls in ("vtkXdmf3Reader", "vtkXdmfReader"):
    R = getattr(vtk, cls, None)
    print(cls, "available" if R else "missing")
    if not R: continue
    r = R(); r.SetFileName(path); r.UpdateInformation()
    info = r.GetOutputInformation(0)
    steps = info.Get(vtk.vtkStreamingDemandDrivenPipeline.TIME_STEPS())
    print(" time steps:", steps)
    if steps:
        r.UpdateTimeStep(steps[-1]) if hasattr(r, "UpdateTimeStep") else r.Update()
    else:
        r.Update()
    out = r.GetOutputDataObject(0)
    print(" output:", out.GetClassName(), "dims" , out.GetDimensions() if hasattr(out,"GetDimensions") else "", "bounds", out.GetBounds() if hasattr(out,"GetBounds") else "")
    cd = out.GetCellData()
    for i in range(cd.GetNumberOfArrays()):
        a = vtk_to_numpy(cd.GetArray(i)); print(" cell array", cd.GetArrayName(i), a.shape, a.min(), a.max())
