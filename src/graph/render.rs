//! A `Topology` as Mermaid (renders in GitHub Markdown), Graphviz DOT, or an SVG laid
//! out here in columns (left to right, by longest path from the workloads), so the HTML
//! report needs no JavaScript renderer.

use super::{LinkKind, NodeKind, Topology};
use std::fmt::Write;

/// The groups (services, brokers) in order of first appearance, with their nodes.
fn groups(t: &Topology) -> Vec<(&str, Vec<usize>)> {
    let mut out: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, n) in t.nodes.iter().enumerate() {
        if let Some(g) = &n.group {
            match out.iter_mut().find(|(name, _)| name == g) {
                Some((_, members)) => members.push(i),
                None => out.push((g, vec![i])),
            }
        }
    }
    out
}

pub fn mermaid(t: &Topology) -> String {
    let esc = |s: &str| s.replace('"', "#quot;");
    let node = |i: usize| {
        let n = &t.nodes[i];
        let text = esc(&n.lines.join("<br/>"));
        match n.kind {
            NodeKind::Workload => format!("{}([\"{text}\"])", n.id),
            NodeKind::Endpoint => format!("{}[\"{text}\"]", n.id),
            NodeKind::Queue | NodeKind::Topic => format!("{}[(\"{text}\")]", n.id),
            NodeKind::Exchange => format!("{}{{{{\"{text}\"}}}}", n.id),
        }
    };
    let mut out = String::from("flowchart LR\n");
    for (g, (name, members)) in groups(t).iter().enumerate() {
        let _ = writeln!(out, "  subgraph g{g}[\"{}\"]", esc(name));
        for &i in members {
            let _ = writeln!(out, "    {}", node(i));
        }
        out.push_str("  end\n");
    }
    for (i, n) in t.nodes.iter().enumerate() {
        if n.group.is_none() {
            let _ = writeln!(out, "  {}", node(i));
        }
    }
    for l in &t.links {
        let arrow = match l.kind {
            LinkKind::Call => "-->",
            LinkKind::Message => "-.->",
            LinkKind::Delivery => "==>",
        };
        let (a, b) = (&t.nodes[l.from].id, &t.nodes[l.to].id);
        if l.label.is_empty() {
            let _ = writeln!(out, "  {a} {arrow} {b}");
        } else {
            let _ = writeln!(out, "  {a} {arrow}|\"{}\"| {b}", esc(&l.label));
        }
    }
    out
}

pub fn dot(t: &Topology) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let node = |i: usize| {
        let n = &t.nodes[i];
        let shape = match n.kind {
            NodeKind::Workload => "ellipse",
            NodeKind::Endpoint => "box",
            NodeKind::Queue | NodeKind::Topic => "cylinder",
            NodeKind::Exchange => "hexagon",
        };
        let label = n
            .lines
            .iter()
            .map(|l| esc(l))
            .collect::<Vec<_>>()
            .join("\\n");
        format!("{} [label=\"{label}\", shape={shape}];", n.id)
    };
    let mut out = String::from(
        "digraph meshsim {\n  rankdir=LR;\n  node [fontname=\"sans-serif\", fontsize=11];\n  edge [fontname=\"sans-serif\", fontsize=9];\n",
    );
    for (g, (name, members)) in groups(t).iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph cluster_{g} {{\n    label=\"{}\";",
            esc(name)
        );
        for &i in members {
            let _ = writeln!(out, "    {}", node(i));
        }
        out.push_str("  }\n");
    }
    for (i, n) in t.nodes.iter().enumerate() {
        if n.group.is_none() {
            let _ = writeln!(out, "  {}", node(i));
        }
    }
    for l in &t.links {
        let style = match l.kind {
            LinkKind::Call => "solid",
            LinkKind::Message => "dashed",
            LinkKind::Delivery => "bold",
        };
        let _ = writeln!(
            out,
            "  {} -> {} [label=\"{}\", style={style}];",
            t.nodes[l.from].id,
            t.nodes[l.to].id,
            esc(&l.label)
        );
    }
    out.push_str("}\n");
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Approximate width of a text in pixels (DejaVu Sans at `size`): layout only.
fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.6
}

const LINE: f64 = 16.0;
const PAD: f64 = 8.0;
const GAP_Y: f64 = 22.0;

/// Longest path from a source, bounded (a cycle stops growing at the node count).
fn ranks(t: &Topology) -> Vec<usize> {
    let n = t.nodes.len();
    let mut rank = vec![0usize; n];
    for _ in 0..n {
        let mut changed = false;
        for l in &t.links {
            if l.from != l.to && rank[l.to] < rank[l.from] + 1 && rank[l.from] + 1 < n {
                rank[l.to] = rank[l.from] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    rank
}

/// The diagram as a standalone SVG element (ids prefixed `meshsim-`).
pub fn svg(t: &Topology) -> String {
    let layout = layout(t);
    let (width, height) = (layout.width, layout.height);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"meshsim-diagram\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"DejaVu Sans, sans-serif\">\n\
         <defs><marker id=\"meshsim-arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerUnits=\"userSpaceOnUse\" markerWidth=\"9\" markerHeight=\"9\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555\"/></marker></defs>\n<title>system diagram</title>\n"
    );
    links(&mut out, t, &layout);
    nodes(&mut out, t, &layout);
    out.push_str("</svg>\n");
    out
}

/// Where each node's box is drawn, and how big it and the whole diagram are.
struct Layout {
    /// Each node's top-left corner.
    pos: Vec<(f64, f64)>,
    box_w: Vec<f64>,
    box_h: Vec<f64>,
    width: f64,
    height: f64,
}

/// Nodes in columns by rank, left to right, each column as wide as its widest box
/// plus room for the labels of the links that leave it.
fn layout(t: &Topology) -> Layout {
    let rank = ranks(t);
    let columns = rank.iter().copied().max().map_or(0, |m| m + 1);
    let mut col_nodes: Vec<Vec<usize>> = vec![Vec::new(); columns];
    for (i, &r) in rank.iter().enumerate() {
        col_nodes[r].push(i);
    }
    let box_w: Vec<f64> = t
        .nodes
        .iter()
        .map(|n| {
            n.lines
                .iter()
                .enumerate()
                .map(|(k, l)| text_width(l, if k == 0 { 13.0 } else { 11.0 }))
                .fold(0.0, f64::max)
                + 2.0 * PAD
        })
        .collect();
    let box_h: Vec<f64> = t
        .nodes
        .iter()
        .map(|n| n.lines.len() as f64 * LINE + PAD)
        .collect();
    // Room between columns for the longest label leaving that column.
    let mut x = 20.0;
    let mut col_x = Vec::new();
    for c in &col_nodes {
        col_x.push(x);
        let w = c.iter().map(|&i| box_w[i]).fold(0.0, f64::max);
        let label = t
            .links
            .iter()
            .filter(|l| c.contains(&l.from))
            .map(|l| text_width(&l.label, 10.0))
            .fold(0.0, f64::max);
        x += w + label.clamp(60.0, 320.0) + 30.0;
    }
    let mut pos = vec![(0.0, 0.0); t.nodes.len()];
    let mut height: f64 = 0.0;
    for (c, nodes) in col_nodes.iter().enumerate() {
        let mut y = 20.0;
        for &i in nodes {
            pos[i] = (col_x[c], y);
            y += box_h[i] + GAP_Y;
        }
        height = height.max(y);
    }
    let height = height.max(60.0);
    // As wide as the last box (label room is only needed between columns).
    let width = (0..t.nodes.len())
        .map(|i| pos[i].0 + box_w[i])
        .fold(0.0, f64::max)
        + 20.0;
    Layout {
        pos,
        box_w,
        box_h,
        width,
        height,
    }
}

/// Each link as a curve from its source's right side to its target's left side, with
/// its label.
fn links(out: &mut String, t: &Topology, layout: &Layout) {
    let Layout {
        pos, box_w, box_h, ..
    } = layout;
    let mut seen_pairs: Vec<(usize, usize)> = Vec::new();
    for l in &t.links {
        let (fx, fy) = pos[l.from];
        let (tx, ty) = pos[l.to];
        let (x1, y1) = (fx + box_w[l.from], fy + box_h[l.from] / 2.0);
        let (x2, y2) = (tx, ty + box_h[l.to] / 2.0);
        let bend = ((x2 - x1).abs() / 2.0).max(40.0);
        let (stroke, dash, w) = match l.kind {
            LinkKind::Call => ("#555", "", 1.4),
            LinkKind::Message => ("#8a5a00", " stroke-dasharray=\"6 4\"", 1.4),
            LinkKind::Delivery => ("#8a5a00", "", 2.6),
        };
        let _ = writeln!(
            out,
            "<path class=\"link\" d=\"M {x1:.1} {y1:.1} C {:.1} {y1:.1}, {:.1} {y2:.1}, {x2:.1} {y2:.1}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"{w}\"{dash} marker-end=\"url(#meshsim-arrow)\"/>",
            x1 + bend,
            x2 - bend
        );
        if !l.label.is_empty() {
            let k = seen_pairs.iter().filter(|&&p| p == (l.from, l.to)).count();
            seen_pairs.push((l.from, l.to));
            // Beside the arrowhead, where the curve arrives level: links leaving one
            // node end at different targets, so their labels do not overlap.
            let lx = (x2 - text_width(&l.label, 10.0) - 12.0).max(x1 + 4.0);
            let ly = y2 - 5.0 - 12.0 * k as f64;
            let _ = writeln!(
                out,
                "<text x=\"{lx:.1}\" y=\"{ly:.1}\" font-size=\"10\" fill=\"#333\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">{}</text>",
                xml(&l.label)
            );
        }
    }
}

/// Each node as a box, its name in bold over its details.
fn nodes(out: &mut String, t: &Topology, layout: &Layout) {
    let Layout {
        pos, box_w, box_h, ..
    } = layout;
    for (i, n) in t.nodes.iter().enumerate() {
        let (x, y) = pos[i];
        let (fill, rx) = match n.kind {
            NodeKind::Workload => ("#e8f1fb", 18.0),
            NodeKind::Endpoint => ("#f4f4f4", 4.0),
            NodeKind::Queue | NodeKind::Topic => ("#fff4e0", 10.0),
            NodeKind::Exchange => ("#fdebd0", 0.0),
        };
        let _ = writeln!(
            out,
            "<g class=\"node\" id=\"meshsim-{}\"><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"{rx}\" fill=\"{fill}\" stroke=\"#777\"/>",
            n.id, box_w[i], box_h[i]
        );
        for (k, line) in n.lines.iter().enumerate() {
            let (size, weight) = if k == 0 {
                (13, " font-weight=\"bold\"")
            } else {
                (11, "")
            };
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"{size}\"{weight} fill=\"#222\">{}</text>",
                x + PAD,
                y + PAD / 2.0 + LINE * (k as f64 + 0.8),
                xml(line)
            );
        }
        out.push_str("</g>\n");
    }
}
