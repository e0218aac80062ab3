// reflectgym web tasks: the page side of every bundled task.
//
// A task page loads this file and calls RG.task({...}) with:
//   id, pages (optional list of page file names it spans),
//   generate(rng)              -> the instance (all randomness comes from the seeded rng),
//   instruction(inst)          -> what the agent is asked to do,
//   render(inst, data, page)   -> builds the page's DOM (data is the episode's saved progress),
//   problem(inst, data)        -> null when the goal is met, else {field, kind, hint} for the first thing wrong,
//   next(inst, data, page)     -> the scripted solver's next step {op, el, text},
//   secret(inst)               -> teacher-only text (the solution),
//   tick(inst, data)           -> optional: advance time-dependent content by one `wait`.
// Progress lives in sessionStorage, so it survives navigation between a task's pages and dies with the
// browser context (each episode has its own). Python drives it through RG.start / poll / finish / next.
(function () {
  'use strict';
  const KEY = 'reflectgym-episode';

  function mulberry32(seed) {
    let a = seed >>> 0;
    return function () {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function makeRng(seed) {
    const next = mulberry32(seed);
    const rng = {
      float: next,
      int(lo, hi) { return lo + Math.floor(next() * (hi - lo + 1)); },
      pick(items) { return items[Math.floor(next() * items.length)]; },
      shuffle(items) {
        const copy = items.slice();
        for (let i = copy.length - 1; i > 0; i--) {
          const j = Math.floor(next() * (i + 1));
          [copy[i], copy[j]] = [copy[j], copy[i]];
        }
        return copy;
      },
      sample(items, k) { return rng.shuffle(items).slice(0, k); },
      word() { return rng.pick(WORDS); },
      name() { return rng.pick(FIRST) + ' ' + rng.pick(LAST); },
    };
    return rng;
  }

  const WORDS = ['amber', 'birch', 'cobalt', 'delta', 'ember', 'fjord', 'garnet', 'harbor', 'indigo', 'juniper',
    'kestrel', 'lagoon', 'meadow', 'nimbus', 'orchid', 'pepper', 'quartz', 'raven', 'saffron', 'tundra', 'umber',
    'violet', 'willow', 'xenon', 'yarrow', 'zephyr', 'canyon', 'falcon', 'lantern', 'marble', 'copper', 'thistle'];
  const FIRST = ['Ada', 'Bruno', 'Chiara', 'Dmitri', 'Elena', 'Farid', 'Greta', 'Hugo', 'Ines', 'Jonas', 'Keiko',
    'Lars', 'Mina', 'Nadia', 'Omar', 'Priya', 'Quentin', 'Rosa', 'Sven', 'Tala', 'Umar', 'Vera', 'Wen', 'Yusuf'];
  const LAST = ['Abbott', 'Baptiste', 'Castillo', 'Dubois', 'Eriksen', 'Fontaine', 'Greco', 'Haddad', 'Ivanova',
    'Jansen', 'Kowalski', 'Lindqvist', 'Moreau', 'Novak', 'Okafor', 'Petrov', 'Quinn', 'Rossi', 'Sato', 'Tanaka'];

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else if (key === 'text') el.textContent = value;
      else if (key === 'value') el.value = value;
      else el.setAttribute(key, value === true ? '' : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return el;
  }

  let def = null;
  let inst = null;
  let store = null;

  function save() { sessionStorage.setItem(KEY, JSON.stringify(store)); }
  function load() {
    try { return JSON.parse(sessionStorage.getItem(KEY) || 'null'); } catch (e) { return null; }
  }
  function pageName() { return location.pathname.split('/').pop(); }
  function param(name) { return new URLSearchParams(location.search).get(name); }

  function draw() {
    inst = def.generate(makeRng(store.seed));
    const root = document.getElementById('app');
    root.replaceChildren();
    def.render(inst, store.data, pageName(), root);
  }

  function idOf(el) {
    if (!el) return null;
    const id = el.getAttribute('data-rg-id');
    return id === null ? null : Number(id);
  }

  window.RG = {
    h, param, makeRng,
    task(definition) {
      def = definition;
      const saved = load();
      if (saved && saved.task === def.id) { store = saved; draw(); }
    },
    // --- called by the env -------------------------------------------------------------
    start(seed) {
      store = {task: def.id, seed: seed >>> 0, data: {}, event: null, solved: false};
      save();
      draw();
      return {task: def.id, instruction: def.instruction(inst), privileged: def.secret(inst)};
    },
    poll() {
      if (!store) return {solved: false, event: null, started: false};
      const event = store.event;
      if (event) { store.event = null; save(); }
      return {solved: store.solved, event, started: true};
    },
    finish() {
      if (!store) return {solved: false, problem: {field: 'page', kind: 'the task page', hint: ''}};
      if (store.solved) return {solved: true, problem: null};
      return {solved: false, problem: def.problem(inst, store.data) || def.unfinished ||
        {field: 'task', kind: 'the final step the instruction asks for (e.g. pressing its button)',
         hint: 'Finish the last step the instruction names before saying done.'}};
    },
    next() {
      if (!store) return {op: 'done'};
      const step = def.next(inst, store.data, pageName()) || {op: 'done'};
      return {op: step.op, id: step.el ? idOf(step.el) : null, text: step.text === undefined ? null : step.text};
    },
    tick() { if (store && def.tick) { def.tick(inst, store.data); save(); draw(); } },
    // --- called by task pages ----------------------------------------------------------
    get data() { return store ? store.data : {}; },
    save() { if (store) save(); },
    redraw() { if (store) { save(); draw(); } },
    submit() {
      const problem = def.problem(inst, store.data);
      if (problem) store.event = problem; else store.solved = true;
      save();
      return !problem;
    },
    fail(problem) { store.event = problem; save(); },
    succeed() { store.solved = true; save(); },
  };
})();
