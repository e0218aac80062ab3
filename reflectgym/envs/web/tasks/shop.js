// The shop task: four pages (home, category, product, cart) sharing one definition; progress is the cart.
(function () {
  const {h} = RG;
  const DEPARTMENTS = {Kitchen: ['Whisk', 'Colander', 'Teapot', 'Grater', 'Ladle', 'Skillet'],
    Garden: ['Trowel', 'Hose reel', 'Pruner', 'Bird feeder', 'Watering can', 'Rake'],
    Office: ['Stapler', 'Desk lamp', 'Notebook', 'Hole punch', 'Pen cup', 'Monitor stand']};
  const link = (href, text) => h('a', {href, text});
  const cart = (data) => data.cart || (data.cart = []);
  RG.task({
    id: 'shop',
    generate(rng) {
      const products = {};
      for (const [dept, names] of Object.entries(DEPARTMENTS))
        products[dept] = rng.sample(names, 4).map((name) => ({name: name + ' ' + rng.word(), price: rng.int(4, 90) + 0.99}));
      const dept = rng.pick(Object.keys(DEPARTMENTS));
      return {products, dept, target: rng.pick(products[dept]).name};
    },
    instruction: (i) => `Buy the "${i.target}" from the ${i.dept} department: add it to the cart, then check out from the cart page.`,
    render(inst, data, page, root) {
      const nav = h('nav', {}, link('shop-home.html', 'Home'), ' · ', link('shop-cart.html', `Cart (${cart(data).length})`));
      root.append(nav);
      if (page === 'shop-home.html') {
        root.append(h('h1', {text: 'Corner shop'}), h('p', {text: 'Departments:'}),
          h('ul', {}, Object.keys(inst.products).map((d) => h('li', {}, link('shop-category.html?d=' + encodeURIComponent(d), d)))));
      } else if (page === 'shop-category.html') {
        const dept = RG.param('d');
        root.append(h('h1', {text: dept || 'Unknown department'}),
          h('ul', {}, (inst.products[dept] || []).map((p) => h('li', {},
            link(`shop-product.html?d=${encodeURIComponent(dept)}&p=${encodeURIComponent(p.name)}`, p.name)))));
      } else if (page === 'shop-product.html') {
        const product = (inst.products[RG.param('d')] || []).find((p) => p.name === RG.param('p'));
        if (!product) { root.append(h('h1', {text: 'No such product'})); return; }
        root.append(h('h1', {text: product.name}), h('p', {text: `$${product.price.toFixed(2)}`}),
          h('button', {text: 'Add to cart', onclick: () => { cart(data).push(product.name); RG.redraw(); }}));
        if (cart(data).includes(product.name)) root.append(h('p', {role: 'status', text: 'Added to your cart.'}));
      } else {
        root.append(h('h1', {text: 'Your cart'}),
          cart(data).length ? h('ul', {}, cart(data).map((name, k) => h('li', {}, name + ' ',
            h('button', {text: 'Remove', 'aria-label': 'Remove ' + name, onclick: () => { cart(data).splice(k, 1); RG.redraw(); }}))))
            : h('p', {text: 'The cart is empty.'}),
          h('button', {text: 'Check out', onclick: () => RG.submit()}));
      }
    },
    problem(inst, data) {
      const items = cart(data);
      if (!items.includes(inst.target)) return {field: 'cart', kind: 'the product named in the instruction to be in it',
        hint: `Go to the ${inst.dept} department, open the product's page and press Add to cart; then check out.`};
      if (items.length !== 1) return {field: 'cart', kind: 'only the one product the instruction names, once',
        hint: 'Remove the other items on the cart page, then check out.'};
      if (location.pathname.split('/').pop() !== 'shop-cart.html') return {field: 'checkout', kind: 'a check-out from the cart page',
        hint: 'Open the cart page and press Check out.'};
      return null;
    },
    unfinished: {field: 'checkout', kind: 'a check-out with the named product in the cart', hint: 'Finish on the cart page.'},
    next(inst, data, page) {
      const items = cart(data);
      const anchor = (text) => Array.from(document.querySelectorAll('a')).find((a) => a.textContent === text);
      const button = (text) => Array.from(document.querySelectorAll('button')).find((b) => b.textContent === text);
      const done = items.length === 1 && items[0] === inst.target;
      if (page === 'shop-cart.html') {
        const extra = items.findIndex((name, k) => name !== inst.target || items.indexOf(name) !== k);
        if (extra >= 0) return {op: 'click', el: document.querySelectorAll('li button')[extra]};
        return items.includes(inst.target) ? {op: 'click', el: button('Check out')} : {op: 'click', el: anchor('Home')};
      }
      if (done || items.includes(inst.target)) return {op: 'click', el: document.querySelector('a[href="shop-cart.html"]')};
      if (page === 'shop-home.html') return {op: 'click', el: anchor(inst.dept)};
      if (page === 'shop-category.html')
        return RG.param('d') === inst.dept ? {op: 'click', el: anchor(inst.target)} : {op: 'click', el: anchor('Home')};
      if (RG.param('p') === inst.target) return {op: 'click', el: button('Add to cart')};
      return {op: 'click', el: anchor('Home')};
    },
    secret: (i) => `Solution: Home → ${i.dept} → "${i.target}" → Add to cart → Cart → Check out.`,
  });
})();
