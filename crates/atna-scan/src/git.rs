//! Scanning a repository's history (`atna scan --git`): a key deleted from the files is still in every clone.
//!
//! 1. Every ref (branches, tags, remotes, stash, `HEAD`) is peeled to its commit and every commit reachable from any of
//!    them is walked once; every tree is read once (by object ID), which gives the set of distinct blobs.
//! 2. Each distinct blob is scanned once, in parallel, unless its header says it is larger than the cap (it is then
//!    not inflated at all).
//! 3. Only when a blob held a key are paths and commits looked at again: for each commit, which (key, path) pairs its
//!    tree holds that none of its parents' trees hold (trees are memoised by ID, so unchanged subtrees cost nothing);
//!    the oldest such commit is the one reported, with its author. Commits are decoded for authors only then.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use gix::objs::TreeRefIter;
use gix::ObjectId;

use crate::{findings_in, Commit, Finding, Options, Report, ScanError, Skipped};

fn git_err(e: impl std::fmt::Display) -> ScanError {
    ScanError::Git(e.to_string())
}

/// A commit of the walk: its tree and parents.
struct Node {
    tree: ObjectId,
    parents: Vec<ObjectId>,
}

/// Scans the history of each repository that holds one of `paths`, once per repository.
pub fn scan_all(paths: &[PathBuf], opts: &Options) -> Result<Report, ScanError> {
    let mut seen = HashSet::new();
    let mut report = Report::default();
    for p in paths {
        let repo = open(p)?;
        let dir = repo.git_dir().canonicalize().unwrap_or_else(|_| repo.git_dir().to_owned());
        if seen.insert(dir) {
            report.merge(scan_repo(&repo, opts)?);
        }
    }
    Ok(report)
}

/// Scans the history of the repository that holds `path`.
pub fn scan(path: &Path, opts: &Options) -> Result<Report, ScanError> {
    scan_repo(&open(path)?, opts)
}

/// The repository that holds `path` (a file or a directory).
fn open(path: &Path) -> Result<gix::Repository, ScanError> {
    let dir = if path.is_file() {
        path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
    } else {
        path
    };
    gix::discover(dir)
        .map_err(|e| ScanError::Path { path: path.to_owned(), message: format!("not in a git repository ({e})") })
}

fn scan_repo(repo: &gix::Repository, opts: &Options) -> Result<Report, ScanError> {
    let repo = repo.clone();
    let mut report = Report::default();

    // Every ref, peeled; a ref may point straight at a tree or a blob too.
    let mut tips = Vec::new();
    let mut loose_blobs = Vec::new();
    let mut loose_trees = Vec::new();
    let refs = repo.references().map_err(git_err)?;
    let mut ids: Vec<ObjectId> = Vec::new();
    for r in refs.all().map_err(git_err)? {
        match r {
            Ok(mut r) => match r.peel_to_id() {
                Ok(id) => ids.push(id.detach()),
                Err(e) => report.errors.push(format!("ref {}: {e}", r.name().as_bstr())),
            },
            Err(e) => report.errors.push(format!("a ref: {e}")),
        }
    }
    if let Ok(id) = repo.head_id() {
        ids.push(id.detach());
    }
    ids.sort();
    ids.dedup();
    for id in ids {
        match repo.find_header(id).map(|h| h.kind()) {
            Ok(gix::objs::Kind::Commit) => tips.push(id),
            Ok(gix::objs::Kind::Tree) => loose_trees.push(id),
            Ok(gix::objs::Kind::Blob) => loose_blobs.push(id),
            Ok(gix::objs::Kind::Tag) => {}
            Err(e) => report.errors.push(format!("object {id}: {e}")),
        }
    }

    // 1. Commits and distinct blobs.
    let mut commits: HashMap<ObjectId, Node> = HashMap::new();
    if !tips.is_empty() {
        for info in repo.rev_walk(tips).all().map_err(git_err)? {
            let info = info.map_err(git_err)?;
            let tree = info.object().map_err(git_err)?.tree_id().map_err(git_err)?.detach();
            commits.insert(info.id, Node { tree, parents: info.parent_ids.iter().copied().collect() });
        }
    }
    report.commits_walked = commits.len() as u64;
    let mut seen_trees = HashSet::new();
    let mut seen_blobs: HashSet<ObjectId> = loose_blobs.iter().copied().collect();
    let mut stack: Vec<ObjectId> = commits.values().map(|n| n.tree).chain(loose_trees).collect();
    while let Some(tree) = stack.pop() {
        if !seen_trees.insert(tree) {
            continue;
        }
        let obj = repo.find_object(tree).map_err(git_err)?;
        for entry in TreeRefIter::from_bytes(&obj.data, repo.object_hash()) {
            let entry = entry.map_err(git_err)?;
            let id = entry.oid.to_owned();
            if entry.mode.is_tree() {
                if !seen_trees.contains(&id) {
                    stack.push(id);
                }
            } else if entry.mode.is_blob_or_symlink() {
                seen_blobs.insert(id);
            }
            // Submodules (commit entries) belong to another repository.
        }
    }

    // 2. Each blob once, in parallel.
    let blobs: Vec<ObjectId> = seen_blobs.into_iter().collect();
    let hits = scan_blobs(&repo, &blobs, opts, &mut report);

    // 3. Where each key came in.
    if !hits.is_empty() {
        attribute(&repo, &commits, &hits, &mut report)?;
    }
    Ok(report)
}

/// Scans every blob; returns the findings (without paths) of the blobs that hold keys.
fn scan_blobs(
    repo: &gix::Repository,
    blobs: &[ObjectId],
    opts: &Options,
    report: &mut Report,
) -> HashMap<ObjectId, Vec<Finding>> {
    let sync = repo.clone().into_sync();
    let next = AtomicUsize::new(0);
    let out = Mutex::new((HashMap::new(), Report::default()));
    std::thread::scope(|s| {
        for _ in 0..opts.threads().min(blobs.len().max(1)) {
            s.spawn(|| {
                let repo = sync.to_thread_local();
                let mut hits = Vec::new();
                let mut local = Report::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&id) = blobs.get(i) else { break };
                    match repo.find_header(id) {
                        Ok(h) if h.size() > opts.max_size => {
                            local
                                .skipped
                                .push(Skipped { path: format!("blob {id}"), reason: "larger than --max-size".into() });
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            local.errors.push(format!("blob {id}: {e}"));
                            continue;
                        }
                    }
                    match repo.find_object(id) {
                        Ok(obj) => {
                            local.blobs_scanned += 1;
                            local.bytes_scanned += obj.data.len() as u64;
                            let found = findings_in(&obj.data, "");
                            if !found.is_empty() {
                                hits.push((id, found));
                            }
                        }
                        Err(e) => local.errors.push(format!("blob {id}: {e}")),
                    }
                }
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                out.0.extend(hits);
                out.1.merge(local);
            });
        }
    });
    let (hits, counts) = out.into_inner().unwrap_or_else(|e| e.into_inner());
    report.merge(counts);
    hits
}

/// (Credential ID, path) pairs: what "the same key in the same file" means across commits.
type KeyAt = (String, String);

/// For each (key, path), the oldest commit whose tree has it and none of whose parents' trees do.
fn attribute(
    repo: &gix::Repository,
    commits: &HashMap<ObjectId, Node>,
    hits: &HashMap<ObjectId, Vec<Finding>>,
    report: &mut Report,
) -> Result<(), ScanError> {
    let mut memo = TreeMemo { repo, hits, trees: HashMap::new() };
    let empty = Rc::new(Vec::new());
    // (key, path) → (commit time, commit, blob) of the best introduction so far.
    let mut best: HashMap<KeyAt, (i64, ObjectId, ObjectId)> = HashMap::new();
    let mut times: HashMap<ObjectId, (i64, Commit)> = HashMap::new();
    for (id, node) in commits {
        let here = memo.hits(node.tree)?;
        if here.is_empty() {
            continue;
        }
        let mut before: HashSet<KeyAt> = HashSet::new();
        for p in &node.parents {
            let t = commits.get(p).map(|n| n.tree);
            let theirs = match t {
                Some(t) => memo.hits(t)?,
                None => empty.clone(),
            };
            for (path, blob) in theirs.iter() {
                for f in &hits[blob] {
                    before.insert((f.credential_id.clone(), path.clone()));
                }
            }
        }
        for (path, blob) in here.iter() {
            for f in &hits[blob] {
                let k = (f.credential_id.clone(), path.clone());
                if before.contains(&k) {
                    continue;
                }
                if !times.contains_key(id) {
                    times.insert(*id, describe(repo, *id)?);
                }
                let t = times[id].0;
                let better = best.get(&k).is_none_or(|(bt, bc, _)| (t, *id) < (*bt, *bc));
                if better {
                    best.insert(k, (t, *id, *blob));
                }
            }
        }
    }
    let mut attributed: HashSet<ObjectId> = HashSet::new();
    let mut found: Vec<Finding> = Vec::new();
    for ((cred, path), (_, commit, blob)) in best {
        attributed.insert(blob);
        if let Some(f) = hits[&blob].iter().find(|f| f.credential_id == cred) {
            let mut f = f.clone();
            f.path = path;
            f.commit = Some(times[&commit].1.clone());
            found.push(f);
        }
    }
    // A blob that only a ref pointing straight at a tree or blob reaches: no commit to name.
    for (blob, fs) in hits {
        if !attributed.contains(blob) {
            found.extend(fs.iter().cloned().map(|mut f| {
                f.path = format!("blob {blob}");
                f
            }));
        }
    }
    found.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
    report.findings.extend(found);
    Ok(())
}

/// A commit's author and date.
fn describe(repo: &gix::Repository, id: ObjectId) -> Result<(i64, Commit), ScanError> {
    let c = repo.find_commit(id).map_err(git_err)?;
    let a = c.author().map_err(git_err)?;
    let seconds = a.seconds();
    let date = chrono::DateTime::from_timestamp(seconds, 0)
        .map_or_else(|| seconds.to_string(), |d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let commit = Commit {
        id: id.to_string(),
        author_name: a.name.to_string().trim().to_owned(),
        author_email: a.email.to_string().trim().to_owned(),
        date,
    };
    Ok((seconds, commit))
}

/// Which hit blobs a tree holds, at which paths; memoised by tree ID.
struct TreeMemo<'a> {
    repo: &'a gix::Repository,
    hits: &'a HashMap<ObjectId, Vec<Finding>>,
    trees: HashMap<ObjectId, Rc<Vec<(String, ObjectId)>>>,
}

impl TreeMemo<'_> {
    fn hits(&mut self, tree: ObjectId) -> Result<Rc<Vec<(String, ObjectId)>>, ScanError> {
        if let Some(h) = self.trees.get(&tree) {
            return Ok(h.clone());
        }
        let data = self.repo.find_object(tree).map_err(git_err)?.detach().data;
        let mut out = Vec::new();
        for entry in TreeRefIter::from_bytes(&data, self.repo.object_hash()) {
            let entry = entry.map_err(git_err)?;
            let id = entry.oid.to_owned();
            let name = entry.filename.to_string();
            if entry.mode.is_tree() {
                for (path, blob) in self.hits(id)?.iter() {
                    out.push((format!("{name}/{path}"), *blob));
                }
            } else if entry.mode.is_blob_or_symlink() && self.hits.contains_key(&id) {
                out.push((name, id));
            }
        }
        let out = Rc::new(out);
        self.trees.insert(tree, out.clone());
        Ok(out)
    }
}
