"""A compact accessibility-tree text of a page, with element ids that stay put for the whole episode.

A walker (JavaScript, added to every page) visits the rendered DOM, SVG included, and keeps what a person would
act on or read: interactive elements (links, buttons, fields, checkboxes, tabs, options, ...), headings and
landmarks, elements with text of their own, and elements the page made clickable without text or role (an icon,
a coloured box, an SVG shape: a pointer listener, an inline handler, a `tabindex`, or where a pointer cursor
starts). Those show as `clickable`, described by their tag, classes and colour; at most 120 elements are kept
per SVG drawing, so a chart's every label cannot crowd out the rest of the page. Each kept element gets a
`data-rg-id` once; ids only grow within an episode (a new page continues the count), so an id the agent saw
never silently means another element.

A field's value is shown whole up to a budget the caller sets (`BrowserDriver.value_chars`: a third of the
observation), so a long text can be read and what was typed checked; a longer one shows its start and its end
around ` … `. Names are cut at 100 characters. A multiple-choice list shows all its chosen options
(`selected=[...]`) instead of a value.

One line per element, indented by depth::

    [4] textbox "Email" value="ann@example.com" focused
    [5] combobox "Country" value="Chile" options=["Chile", "Peru"]
    [6] combobox "Toppings" options=["Ham", "Olive", "Corn"] selected=["Ham", "Corn"] multiple
    [7] button "Send"
    [8] textbox "Arrival" value="" date (YYYY-MM-DD)
    [9] clickable "span.star"
    [10] clickable "circle" fill=red at=60,45 size=20x20

An SVG shape or text says where it is drawn (its centre, in page pixels) and its size, as it says its colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

AXTREE_JS = r"""
(() => {
  if (window.__rgAx) return;
  window.addEventListener('beforeunload', () => { window.__rgLeaving = true; });
  // Elements the page listens to for the pointer (added before any page script runs, so every listener is seen).
  const POINTER_EVENTS = new Set(['click', 'dblclick', 'mousedown', 'mouseup', 'pointerdown', 'pointerup',
    'touchstart', 'contextmenu', 'mouseover', 'mouseenter', 'pointerover', 'pointerenter']);
  // Fields the page listens to as they are typed into (an autocomplete's list comes a moment after the typing).
  const TYPING_EVENTS = new Set(['input', 'keydown', 'keyup', 'keypress']);
  const listened = new WeakSet();
  const typedTo = new WeakSet();
  const addListener = EventTarget.prototype.addEventListener;
  EventTarget.prototype.addEventListener = function (type, listener, options) {
    if (this instanceof Element && POINTER_EVENTS.has(String(type))) listened.add(this);
    if (this instanceof Element && TYPING_EVENTS.has(String(type))) typedTo.add(this);
    return addListener.call(this, type, listener, options);
  };
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
  const FORMATS = {date: 'YYYY-MM-DD', time: 'HH:MM', 'datetime-local': 'YYYY-MM-DDTHH:MM', month: 'YYYY-MM',
    week: 'YYYY-Www', color: '#rrggbb'};
  const formatOf = (el) => el.tagName === 'INPUT' ? FORMATS[(el.getAttribute('type') || '').toLowerCase()] : undefined;
  const actionable = (el, cursor, parentCursor) => listened.has(el) || typeof el.onclick === 'function'
    || typeof el.onmousedown === 'function' || (el.hasAttribute('tabindex') && el.tabIndex >= 0)
    || (cursor === 'pointer' && parentCursor !== 'pointer');
  const TRANSPARENT = new Set(['', 'none', 'transparent', 'rgba(0, 0, 0, 0)']);
  const describe = (el, style) => {
    const classes = Array.from(el.classList).filter((name) => !name.startsWith('rg-')).slice(0, 3);
    const parts = [el.tagName.toLowerCase() + classes.map((name) => '.' + name).join('')];
    if (!(el instanceof SVGElement)) {  // (an SVG shape's colour is a state: see `fillOf`)
      const background = el.style.backgroundColor || style.backgroundColor;
      if (!TRANSPARENT.has(background)) parts.push('background=' + background);
      const image = /url\(["']?([^"')]*)/.exec(style.backgroundImage || '');
      const file = image && (image[1].startsWith('data:') ? 'inline' : clean(image[1].split('/').pop(), 40));
      if (file) parts.push('image=' + file);
    }
    return clean(parts.join(' '), 100);
  };
  const SVG_SHAPES = new Set(['rect', 'circle', 'ellipse', 'polygon', 'polyline', 'path', 'line', 'text']);
  const fillOf = (el) => {  // the colour an SVG shape or text is drawn in, as the page wrote it where it did
    if (!(el instanceof SVGElement) || !SVG_SHAPES.has(el.tagName)) return '';
    const fill = el.getAttribute('fill') || el.style.fill || getComputedStyle(el).fill;
    return TRANSPARENT.has(fill) ? '' : 'fill=' + fill.replace(/\s+/g, '');
  };
  // Where an SVG shape or text is drawn and how big, in page pixels: a drawing's meaning is often its geometry
  // (the large item, the point at grid coordinate (1,-2), the shape left of another), which no name carries.
  const placeOf = (el) => {
    if (!(el instanceof SVGElement) || !SVG_SHAPES.has(el.tagName)) return '';
    const box = el.getBoundingClientRect();
    const x = Math.round(box.left + box.width / 2 + scrollX), y = Math.round(box.top + box.height / 2 + scrollY);
    return `at=${x},${y} size=${Math.round(box.width)}x${Math.round(box.height)}`;
  };
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
  const headAndTail = (text, limit) => {  // a long value keeps its start and its end (where a last word is)
    const flat = (text || '').replace(/\s+/g, ' ').trim();
    if (flat.length <= limit) return flat;
    const half = Math.floor((limit - 3) / 2);
    return flat.slice(0, half) + ' … ' + flat.slice(flat.length - half);
  };
  const valueOf = (el, role, valueChars) => {
    if (el.tagName === 'SELECT') {
      const option = el.selectedOptions && el.selectedOptions[0];
      return option ? clean(option.text, 100) : '';
    }
    if (el.tagName === 'INPUT' && (el.type || '').toLowerCase() === 'password') return '•'.repeat(el.value.length);
    if ('value' in el && typeof el.value === 'string') return headAndTail(el.value, valueChars);
    if (el.isContentEditable) return headAndTail(el.innerText, valueChars);
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
    const fill = fillOf(el);
    if (fill) states.push(fill);
    const place = placeOf(el);
    if (place) states.push(place);
    const format = formatOf(el);
    if (format) states.push(`${el.getAttribute('type').toLowerCase()} (${format})`);
    if (el.tagName === 'INPUT' && (el.type || '').toLowerCase() === 'password') states.push('password');
    if (el.tagName === 'SELECT' && el.multiple) states.push('multiple');
    if (document.activeElement === el && el !== document.body) states.push('focused');
    return states.join(' ');
  };
  const hidden = (el, style = getComputedStyle(el)) => el.getAttribute('aria-hidden') === 'true'
    || el.getClientRects().length === 0 || style.visibility === 'hidden' || style.display === 'none';
  // Brings `el` into view (the page's centre when it is outside the window; else the least scroll of every box
  // around it: a star in a scrolled list is inside the window, yet clipped by its list); its first box with an
  // area, and that box's centre.
  const centreInView = (el) => {
    const box = el.getBoundingClientRect();
    const outside = box.top < 0 || box.left < 0 || box.bottom > innerHeight || box.right > innerWidth;
    el.scrollIntoView(outside ? {block: 'center', inline: 'center'} : {block: 'nearest', inline: 'nearest'});
    const rect = Array.from(el.getClientRects()).find((r) => r.width > 0 && r.height > 0) || el.getBoundingClientRect();
    return {rect, x: rect.left + rect.width / 2, y: rect.top + rect.height / 2};
  };
  const SKIP_TAGS = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'CANVAS', 'HEAD', 'OPTION', 'defs', 'clipPath',
    'mask', 'symbol', 'marker', 'pattern', 'filter', 'linearGradient', 'radialGradient', 'title', 'desc', 'style',
    'script']);
  const SVG_NODES = 120;  // elements kept per drawing: enough for a game board or a menu, not a chart's every label
  window.__rgAx = {
    snapshot(startId, skipSelectors, limit, valueChars = 200) {
      let nextId = startId;
      const skip = skipSelectors.length ? skipSelectors.join(',') : null;
      const nodes = [];
      const visit = (el, depth, parentCursor, drawing) => {
        if (nodes.length >= limit || SKIP_TAGS.has(el.tagName) || (skip && el.matches(skip))) return;
        if (el.tagName === 'svg' && !drawing) drawing = {left: SVG_NODES};
        const style = getComputedStyle(el);
        if (hidden(el, style)) return;
        const role = roleOf(el);
        if (role === 'hidden' || role === 'presentation' || role === 'none') return;
        let text = ownText(el);
        const labelsControl = role === 'label' && el.control;
        // (a text area's own text is only its first value: what it holds now is its value)
        if (labelsControl || el.tagName === 'TEXTAREA') text = '';
        const keep = KEEP.has(role) || (text && role !== 'label') || (role === 'label' && text);
        const clickable = !keep && role === 'generic' && el !== document.body
          && actionable(el, style.cursor, parentCursor);
        let childDepth = depth;
        if ((keep || clickable) && drawing && drawing.left-- <= 0) return;  // a chart's labels crowd out the page
        if (keep || clickable) {
          let id = el.getAttribute('data-rg-id');
          if (id === null) { id = String(nextId++); el.setAttribute('data-rg-id', id); }
          const named = nameOf(el, role) || (clickable ? describe(el, style) : '');
          const shown = clickable ? 'clickable' : role === 'generic' || role === 'label' ? 'text' : role;
          const many = el.tagName === 'SELECT' && el.multiple;  // its selection is a list, not one value
          const node = [Number(id), shown, named || text,
            VALUE_ROLES.has(role) && !many ? valueOf(el, role, valueChars) : null, statesOf(el, role), depth, null,
            many ? Array.from(el.selectedOptions).map((option) => clean(option.text, 60)) : null];
          if (el.tagName === 'SELECT') node[6] = Array.from(el.options).map((option) => clean(option.text, 60));
          nodes.push(node);
          childDepth = depth + 1;
          if (NAMED_BY_CONTENT.has(role) || el.tagName === 'SELECT' || el.tagName === 'TEXTAREA') return;
        }
        for (const child of el.children) visit(child, childDepth, style.cursor, drawing);
      };
      if (document.body) visit(document.body, 0, 'auto', null);
      return {nodes, nextId, truncated: nodes.length >= limit};
    },
    element(id) {
      return document.querySelector('[data-rg-id="' + id + '"]');
    },
    clickPoint(id) {
      const el = this.element(id);
      if (!el) return {error: 'missing'};
      if (hidden(el)) return {error: 'hidden'};
      const {rect, x, y} = centreInView(el);
      const hit = document.elementFromPoint(x, y);
      const byLabel = hit && el.labels && Array.from(el.labels).some((l) => l.contains(hit));
      if (hit && (hit === el || el.contains(hit) || byLabel)) {
        // A kept element inside `el` at its centre takes the click (a link in a paragraph): say which one.
        const inner = hit.closest('[data-rg-id]');
        const on = inner && inner !== el && el.contains(inner) ? Number(inner.getAttribute('data-rg-id')) : null;
        return {x, y, on, disabled: !!(el.disabled || el.getAttribute('aria-disabled') === 'true')};
      }
      // No element there (its centre is outside the window), or a box around it answering for its centre: it is
      // clipped there (unless it lets the pointer through to that box).
      const empty = rect.width === 0 || rect.height === 0;  // no area of its own: what holds it answers
      if (!hit) return {error: 'clipped', empty};
      if (hit.contains(el)) {
        if (getComputedStyle(el).pointerEvents === 'none')
          return {x, y, disabled: !!(el.disabled || el.getAttribute('aria-disabled') === 'true')};
        return {error: 'clipped', empty};
      }
      const over = hit.closest('[data-rg-id]');
      return {error: 'covered', by: over ? over.getAttribute('data-rg-id') : hit.tagName.toLowerCase()};
    },
    dropPoint(fromId, toId) {
      // Where a drag of `fromId` lets go over `toId`. When the two lie in sibling entries of one list (same tag,
      // same parent: list items, grid cells), it is the centre of the target's entry, as a sortable list judges
      // the pointer against its entries' boxes, not against the text inside them; else the target's own centre.
      const from = this.element(fromId), to = this.element(toId);
      if (!to) return {error: 'missing'};
      if (!from) return {error: 'source missing'};
      if (from.contains(to)) return {error: 'inside'};
      if (hidden(to)) return {error: 'hidden'};
      let toEntry = to, fromEntry = from;  // (each one's box within the smallest box holding both)
      while (toEntry.parentElement && !toEntry.parentElement.contains(from)) toEntry = toEntry.parentElement;
      while (fromEntry.parentElement && !fromEntry.parentElement.contains(to)) fromEntry = fromEntry.parentElement;
      const siblings = !to.contains(from) && toEntry !== fromEntry && toEntry.parentElement === fromEntry.parentElement
        && toEntry.tagName === fromEntry.tagName;
      const zone = siblings ? toEntry : to;
      const {rect, x, y} = centreInView(zone);
      // A drop is judged by where the pointer is, so a target that lets the pointer through to a box around it
      // (an SVG outline with no fill) will do; one covered by another element will not (the dragged one aside).
      const hit = document.elementFromPoint(x, y);
      if (!hit) return {error: 'clipped', empty: rect.width === 0 || rect.height === 0};
      const dragged = siblings ? fromEntry : from;
      if (!(zone.contains(hit) || hit.contains(zone) || dragged.contains(hit))) {
        const over = hit.closest('[data-rg-id]');
        return {error: 'covered', by: over ? over.getAttribute('data-rg-id') : hit.tagName.toLowerCase()};
      }
      // The press point, once more: bringing the target into view may have moved the source away.
      const start = from.getBoundingClientRect();
      const sx = start.left + start.width / 2, sy = start.top + start.height / 2;
      const at = document.elementFromPoint(sx, sy);
      const pressable = !!at && (at === from || from.contains(at));
      return {x, y, width: rect.width, height: rect.height, fromX: sx, fromY: sy, pressable};
    },
    shownText(root) {
      // `root`'s text with each visible element that has no words (a colour swatch, an icon) described in place
      // as the tree would describe it: an instruction may show what it asks for instead of naming it.
      const parts = [];
      const walk = (node) => {
        for (const child of node.childNodes) {
          if (child.nodeType === 3) parts.push(child.textContent);
          if (child.nodeType !== 1 || SKIP_TAGS.has(child.tagName)) continue;
          const style = getComputedStyle(child);
          if (hidden(child, style)) continue;
          if ((child.textContent || '').trim()) { walk(child); continue; }
          const box = child.getBoundingClientRect();
          if (box.width > 0 && box.height > 0) parts.push(' (shown: ' + describe(child, style) + ') ');
        }
      };
      walk(root);
      return clean(parts.join(''), 2000);
    },
    listensToTyping(id) {
      const el = this.element(id);
      return !!el && (typedTo.has(el) || ['oninput', 'onkeydown', 'onkeyup', 'onkeypress'].some(
        (name) => typeof el[name] === 'function'));
    },
    options(id) {
      const el = this.element(id);
      return el && el.tagName === 'SELECT' ? Array.from(el.options).map((o) => [o.text.trim(), o.value]) : null;
    },
    selectedValues(id) {
      const el = this.element(id);
      return el && el.tagName === 'SELECT' ? Array.from(el.selectedOptions).map((o) => o.value) : [];
    },
  };
})();
"""
"""Added to every page: defines `window.__rgAx` (the walker, click and drop targeting, select options)."""


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
    selected: tuple[str, ...] | None = None
    """The chosen options of a multiple-choice dropdown (`<select multiple>`: it has these instead of a value)."""

    def line(self) -> str:
        """This node as one line of the observation."""
        parts = [f"{'  ' * self.depth}[{self.id}] {self.role}"]
        if self.name:
            parts.append(_quote(self.name))
        if self.value is not None:
            parts.append(f"value={_quote(self.value)}")
        if self.options is not None:
            parts.append("options=[" + ", ".join(_quote(option) for option in self.options) + "]")
        if self.selected is not None:
            parts.append("selected=[" + ", ".join(_quote(option) for option in self.selected) + "]")
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
                selected=None if len(item) < 8 or item[7] is None else tuple(str(option) for option in item[7]),
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
