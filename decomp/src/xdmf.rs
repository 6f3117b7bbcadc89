//! XDMF 3 documents indexing cell fields of HDF5 files, for ParaView and VisIt
//! (layout in docs/FORMAT.md, "output.xdmf"): a temporal collection of uniform grids,
//! each a `3DCoRectMesh` with `ORIGIN_DXDYDZ` geometry, lists in `z y x` order; a 2D
//! mesh is one layer of cells in the x-y plane.

/// One grid of the collection: its name, time, and (attribute name, dataset path).
pub struct XdmfGrid {
    /// Grid name, e.g. `step_00000010`.
    pub name: String,
    /// Time value.
    pub time: f64,
    /// Cell attributes: name and dataset path inside the HDF5 file.
    pub fields: Vec<(String, String)>,
}

/// The XDMF text for a mesh of `dims` axes with `cells`, `lower` and `spacing` (x
/// first), whose datasets live in `h5_name` (relative to the XDMF file).
pub fn document(dims: usize, cells: &[usize], lower: &[f64], spacing: &[f64], h5_name: &str, grids: &[XdmfGrid]) -> String {
    let join = |v: &[String]| v.join(" ");
    // (z, y, x) order as XDMF wants; the 2D z axis is one cell thick.
    let dz = if dims == 3 { spacing[2] } else { spacing[0].min(spacing[1]) };
    let z0 = if dims == 3 { lower[2] } else { 0.0 };
    let cz = [if dims == 3 { cells[2] } else { 1 }, cells[1], cells[0]];
    let nodes: Vec<String> = cz.iter().map(|c| (c + 1).to_string()).collect();
    let cell_dims: Vec<String> = cz.iter().map(|c| c.to_string()).collect();
    let origin = [z0, lower[1], lower[0]].map(|v| format!("{v:e}"));
    let step = [dz, spacing[1], spacing[0]].map(|v| format!("{v:e}"));
    let mut s = String::from("<?xml version=\"1.0\" ?>\n<!DOCTYPE Xdmf SYSTEM \"Xdmf.dtd\" []>\n<Xdmf Version=\"3.0\">\n <Domain>\n");
    s += "  <Grid Name=\"TimeSeries\" GridType=\"Collection\" CollectionType=\"Temporal\">\n";
    for g in grids {
        s += &format!("   <Grid Name=\"{}\" GridType=\"Uniform\">\n    <Time Value=\"{:e}\"/>\n", g.name, g.time);
        s += &format!("    <Topology TopologyType=\"3DCoRectMesh\" Dimensions=\"{}\"/>\n", join(&nodes));
        s += "    <Geometry GeometryType=\"ORIGIN_DXDYDZ\">\n";
        s += &format!("     <DataItem Dimensions=\"3\" NumberType=\"Float\" Precision=\"8\" Format=\"XML\">{}</DataItem>\n", join(&origin));
        s += &format!("     <DataItem Dimensions=\"3\" NumberType=\"Float\" Precision=\"8\" Format=\"XML\">{}</DataItem>\n", join(&step));
        s += "    </Geometry>\n";
        for (f, path) in &g.fields {
            s += &format!("    <Attribute Name=\"{f}\" AttributeType=\"Scalar\" Center=\"Cell\">\n");
            s += &format!(
                "     <DataItem Dimensions=\"{}\" NumberType=\"Float\" Precision=\"8\" Format=\"HDF\">{h5_name}:{path}</DataItem>\n",
                join(&cell_dims)
            );
            s += "    </Attribute>\n";
        }
        s += "   </Grid>\n";
    }
    s += "  </Grid>\n </Domain>\n</Xdmf>\n";
    s
}
