// Package gitexport writes a node's 2P-BFT-Log evidence (a bftlog.Store and
// its Frontier) as a Git repository in the layout of DESIGN's "Git form",
// so that an auditor needs nothing but plain git:
//
//	git log --format='%an %s' <author-key>/last      an author's log
//	git log <author-key>/forks/<last-id>              both branches of a fork
//	git merge-base <fork>^1 <fork>^2                  the fork point (= <author-key>/last)
//	git log -1 <author-key>/invalid                   the invalid message kept as proof
//	git show <commit>:message.bin                     the signed wire form, to re-verify
//
// Build is pure (objects and refs in memory, a deterministic function of
// the messages and logs); Repo.Write writes a bare repository of loose,
// zlib-compressed objects. Commit times come from a counter, so two exports
// of the same evidence are byte-identical. The package writes Git objects
// itself (a few dozen lines) rather than depending on a Git library.
package gitexport
