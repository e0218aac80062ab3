"""A compact accessibility-tree text of a page, with element ids that stay put for the whole episode.

A walker (JavaScript, added to every page) visits the rendered DOM and keeps what a person would act on or
read: interactive elements (links, buttons, fields, checkboxes, tabs, options, ...), headings and landmarks,
and elements with text of their own. Each kept element gets a `data-rg-id` once; ids only grow within an
episode (a new page continues the count), so an id the agent saw never silently means another element.

One line per element, indented by depth::

    [4] textbox "Email" value="ann@example.com" focused
    [5] combobox "Country" value="Chile" options=["Chile", "Peru"]
    [6] button "Send"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

AXTREE_JS = r"""
(() => {
  if (window.__rgAx) return;
  window.addEventListener('beforeunload', () => { window.__rgLeaving = true; });
  const TAG_ROLES = {A: 'link', BUTTON: 'button', SELECT: 'combobox', TEXTAREA: 'textbox', H1: 'heading',
    H2: 'heading', H3: 'heading', H4: 'heading', H5: 'heading', H6: 'heading', IMG: 'img', UL: 'list', OL: 'list',
    LI: 'listitem', TABLE: 'table', TR: 'row', TH: 'columnheader', TD: 'cell', NAV: 'navigation', DIALOG: 'dialog',
    SUMMARY: 'button', MAIN: 'main', FORM: 'form', LABEL: 'label'};
  const INPUT_ROLES = {checkbox: 'checkbox', radio: 'radio', submit: 'button', button: 'button', reset: 'button',
    image: 'button', range: 'slider', number: 'spinbutton', search: 'searchbox'};
  const NAMED_BY_CONTENT = new Set(['button', 'link', 'tab', 'heading', 'option', 'menuitem', 'menuitemcheckbox',
    'menuitemradio', 'switch', 'treeitem']);
  const KEEP = new Set([...NAMED_BY_CONTENT, 'textbox', 'searchbox', 'combobox', 'checkbox', 'radio', 'slider',
    'spinbutton', 'listbox', 'tablist', 'dialog', 'alertdialog', 'img', 'list', 'table', 'navigation', 'alert',
    'status', 'columnheader', 'progressbar']);
  const VALUE_ROLES = new Set(['textbox', 'searchbox', 'spinbutton', 'slider', 'combobox']);
  const clean = (text, limit) => {
    const flat = (text || '').replace(/\s+/g, ' ').trim();
    return flat.length > limit ? flat.slice(0, limit - 1) + '…' : flat;
  };
  const roleOf = (el) => {
    const explicit = (el.getAttribute('role') || '').trim().split(/\s+/)[0];
    if (explicit) return explicit;
    if (el.tagName === 'INPUT') {
      const type = (el.getAttribute('type') || 'text').toLowerCase();
      return type === 'hidden' ? 'hidden' : (INPUT_ROLES[type] || 'textbox');
    }
    if (el.tagName === 'A' && !el.hasAttribute('href')) return 'generic';
    if (el.isContentEditable && el.getAttribute('contenteditable') !== null) return 'textbox';
    return TAG_ROLES[el.tagName] || 'generic';
  };
  const ownText = (el) => {
    let text = '';
    for (const child of el.childNodes) if (child.nodeType === 3) text += ' ' + child.textContent;
    return clean(text, 120);
  };
  const nameOf = (el, role) => {
    const aria = el.getAttribute('aria-label');
    if (aria) return clean(aria, 100);
    const by = el.getAttribute('aria-labelledby');
    if (by) {
      const text = by.split(/\s+/).map((id) => document.getElementById(id)).filter(Boolean)
        .map((node) => node.innerText || node.textContent).join(' ');
      if (clean(text, 100)) return clean(text, 100);
    }
    if (el.labels && el.labels.length) {
      const own = (label) => Array.from(label.childNodes).filter((node) => node !== el && !node.contains(el))
        .map((node) => node.textContent).join(' ');
      const text = Array.from(el.labels).map(own).join(' ');
      if (clean(text, 100)) return clean(text, 100);
    }
    if (el.tagName === 'INPUT' && ['submit', 'button', 'reset'].includes((el.type || '').toLowerCase()))
      return clean(el.value, 100);
    if (el.tagName === 'IMG') return clean(el.getAttribute('alt') || el.getAttribute('title'), 100);
    if (NAMED_BY_CONTENT.has(role)) return clean(el.innerText || el.textContent, 100);
    if (el.getAttribute('placeholder')) return clean(el.getAttribute('placeholder'), 100);
    if (el.getAttribute('title')) return clean(el.getAttribute('title'), 100);
    return '';
  };
  const valueOf = (el, role) => {
    if (el.tagName === 'SELECT') {
      const option = el.selectedOptions && el.selectedOptions[0];
      return option ? clean(option.text, 100) : '';
    }
    if (el.tagName === 'INPUT' && (el.type || '').toLowerCase() === 'password') return '•'.repeat(el.value.length);
    if ('value' in el && typeof el.value === 'string') return clean(el.value, 200);
    if (el.isContentEditable) return clean(el.innerText, 200);
    return clean(el.getAttribute('aria-valuenow') || '', 50);
  };
  const statesOf = (el, role) => {
    const states = [];
    const aria = (name) => el.getAttribute('aria-' + name);
    if (role === 'checkbox' || role === 'radio' || role === 'switch' || role === 'menuitemcheckbox') {
      const checked = 'checked' in el && el.tagName === 'INPUT' ? el.checked : aria('checked') === 'true';
      states.push(checked ? 'checked' : 'unchecked');
    }
    if (aria('selected') === 'true' || (el.tagName === 'OPTION' && el.selected)) states.push('selected');
    if (aria('pressed') === 'true') states.push('pressed');
    if (aria('expanded') === 'true') states.push('expanded');
    if (aria('expanded') === 'false') states.push('collapsed');
    if (el.disabled || aria('disabled') === 'true') states.push('disabled');
    if (el.readOnly) states.push('readonly');
    if (el.required || aria('required') === 'true') states.push('required');
    if (el.tagName === 'INPUT' && (el.type || '').toLowerCase() === 'password') states.push('password');
    if (document.activeElement === el && el !== document.body) states.push('focused');
    return states.join(' ');
  };
  const hidden = (el) => {
    if (el.getAttribute('aria-hidden') === 'true' || el.getClientRects().length === 0) return true;
    const style = getComputedStyle(el);
    return style.visibility === 'hidden' || style.display === 'none';
  };
  const SKIP_TAGS = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'SVG', 'svg', 'CANVAS', 'HEAD', 'OPTION']);
  window.__rgAx = {
    snapshot(startId, skipSelectors, limit) {
      let nextId = startId;
      const skip = skipSelectors.length ? skipSelectors.join(',') : null;
      const nodes = [];
      const visit = (el, depth) => {
        if (nodes.length >= limit || SKIP_TAGS.has(el.tagName) || (skip && el.matches(skip)) || hidden(el)) return;
        const role = roleOf(el);
        if (role === 'hidden' || role === 'presentation' || role === 'none') return;
        let text = ownText(el);
        const labelsControl = role === 'label' && el.control;
        if (labelsControl) text = '';
        const keep = KEEP.has(role) || (text && role !== 'label') || (role === 'label' && text);
        let childDepth = depth;
        if (keep) {
          let id = el.getAttribute('data-rg-id');
          if (id === null) { id = String(nextId++); el.setAttribute('data-rg-id', id); }
          const named = nameOf(el, role);
          const node = [Number(id), role === 'generic' || role === 'label' ? 'text' : role,
            named || text, VALUE_ROLES.has(role) ? valueOf(el, role) : null, statesOf(el, role), depth, null];
          if (el.tagName === 'SELECT') node[6] = Array.from(el.options).map((option) => clean(option.text, 60));
          nodes.push(node);
          childDepth = depth + 1;
          if (NAMED_BY_CONTENT.has(role) || el.tagName === 'SELECT' || el.tagName === 'TEXTAREA') return;
        }
        for (const child of el.children) visit(child, childDepth);
      };
      if (document.body) visit(document.body, 0);
      return {nodes, nextId, truncated: nodes.length >= limit};
    },
    element(id) {
      return document.querySelector('[data-rg-id="' + id + '"]');
    },
    clickPoint(id) {
      const el = this.element(id);
      if (!el) return {error: 'missing'};
      if (hidden(el)) return {error: 'hidden'};
      const box = el.getBoundingClientRect();
      if (box.top < 0 || box.left < 0 || box.bottom > innerHeight || box.right > innerWidth)
        el.scrollIntoView({block: 'center', inline: 'center'});
      const rects = Array.from(el.getClientRects());
      const rect = rects.find((r) => r.width > 0 && r.height > 0) || el.getBoundingClientRect();
      const x = rect.left + rect.width / 2, y = rect.top + rect.height / 2;
      const hit = document.elementFromPoint(x, y);
      if (hit && hit !== el && !el.contains(hit) && !(el.labels && Array.from(el.labels).some((l) => l.contains(hit)))
          && !hit.contains(el)) {
        const over = hit.closest('[data-rg-id]');
        return {error: 'covered', by: over ? over.getAttribute('data-rg-id') : hit.tagName.toLowerCase()};
      }
      return {x, y, disabled: !!(el.disabled || el.getAttribute('aria-disabled') === 'true')};
    },
    options(id) {
      const el = this.element(id);
      return el && el.tagName === 'SELECT' ? Array.from(el.options).map((o) => [o.text.trim(), o.value]) : null;
    },
  };
})();
"""
"""Added to every page: defines `window.__rgAx` (the walker, click targeting, select options)."""


@dataclass(frozen=True)
class AxNode:
    """One element of the tree as the agent sees it."""

    id: int
    role: str
    name: str
    value: str | None
    states: str
    depth: int
    options: tuple[str, ...] | None = None

    def line(self) -> str:
        """This node as one line of the observation."""
        parts = [f"{'  ' * self.depth}[{self.id}] {self.role}"]
        if self.name:
            parts.append(_quote(self.name))
        if self.value is not None:
            parts.append(f"value={_quote(self.value)}")
        if self.options is not None:
            parts.append("options=[" + ", ".join(_quote(option) for option in self.options) + "]")
        if self.states:
            parts.append(self.states)
        return " ".join(parts)


@dataclass(frozen=True)
class AxTree:
    """A page's kept elements in document order, and the id the next new element will get."""

    nodes: tuple[AxNode, ...]
    next_id: int
    truncated: bool = False

    @classmethod
    def from_js(cls, raw: dict[str, Any]) -> AxTree:
        """Builds the tree from what `__rgAx.snapshot` returned."""
        nodes = tuple(
            AxNode(
                id=int(item[0]),
                role=str(item[1]),
                name=str(item[2] or ""),
                value=None if item[3] is None else str(item[3]),
                states=str(item[4] or ""),
                depth=int(item[5]),
                options=None if item[6] is None else tuple(str(option) for option in item[6]),
            )
            for item in raw["nodes"]
        )
        return cls(nodes=nodes, next_id=int(raw["nextId"]), truncated=bool(raw.get("truncated")))

    def get(self, element_id: int) -> AxNode | None:
        """The node with this id, or `None`."""
        return next((node for node in self.nodes if node.id == element_id), None)

    def ids_with_role(self, roles: Sequence[str]) -> list[int]:
        """Ids of the nodes whose role is one of `roles`, in page order."""
        return [node.id for node in self.nodes if node.role in roles]

    def text(self, max_chars: int) -> str:
        """The tree as indented lines, cut at `max_chars` with a note saying how much was left out."""
        lines: list[str] = []
        used = 0
        for index, node in enumerate(self.nodes):
            line = node.line()
            if used + len(line) + 1 > max_chars:
                lines.append(f"... ({len(self.nodes) - index} more elements not shown)")
                break
            lines.append(line)
            used += len(line) + 1
        else:
            if self.truncated:
                lines.append("... (more elements not shown)")
        return "\n".join(lines) if lines else "(the page shows nothing to act on)"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
