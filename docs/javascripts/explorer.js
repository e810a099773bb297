/* The paper explorer (docs/explorer.md): filters, free text and sorting over explorer/papers.json, which the site
 * generates from the catalog at build time (site_tools/site/explorer.py).
 *
 * The view lives in the query string (?stage=decoding-time&text=erase&sort=year&order=desc), so a filtered view can be
 * bookmarked, shared and reloaded. Catalog strings are only ever written with textContent or setAttribute, never
 * parsed as HTML. Loaded on every page by mkdocs (extra_javascript); it does nothing where there is no explorer. */
(function () {
  "use strict";

  const root = document.getElementById("atlas-explorer");
  if (!root) return;

  const PAGE_SIZE = 250; // rows rendered at once; "Show more" adds the next ones
  const DEFAULT_SORT = { key: "year", order: "desc" };

  // Material writes the relative path to the site root into every page (#__config); resolve data and links from it.
  function siteRoot() {
    let base = "..";
    const config = document.getElementById("__config");
    if (config) {
      try { base = JSON.parse(config.textContent).base || base; } catch (error) { /* keep the default */ }
    }
    return new URL(base.replace(/\/?$/, "/"), document.baseURI);
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function fold(text) { // case- and accent-insensitive matching
    return String(text).normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  }

  function safeHttpUrl(address) {
    return typeof address === "string" && /^https?:\/\//i.test(address) ? address : null;
  }

  const rootUrl = siteRoot();
  fetch(new URL(root.dataset.src, rootUrl))
    .then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    })
    .then(function (data) { new Explorer(root, data, rootUrl).start(); })
    .catch(function (error) {
      root.replaceChildren(element("p", "atlas-explorer__error", "The paper list could not be loaded (" + error.message + ")."));
    });

  function Explorer(container, data, rootUrl) {
    this.container = container;
    this.rootUrl = rootUrl;
    this.paperUrl = data.paper_url;
    this.cards = data.cards || {};
    this.facets = data.facets;
    this.facetByKey = {};
    for (const facet of this.facets) {
      facet.meaning = {};
      for (const [value, meaning] of facet.values) facet.meaning[value] = meaning;
      this.facetByKey[facet.key] = facet;
    }
    this.papers = data.papers.map(function (paper) {
      const words = [paper.id, paper.title, paper.venue].concat(paper.aliases || [], paper.authors || []);
      return { paper: paper, haystack: fold(words.join(" \u0001 ")) };
    });
    this.columns = [
      { key: "title", label: "Paper", sortValue: function (p) { return fold(p.title); } },
      { key: "year", label: "Year", sortValue: function (p) { return p.year * 100 + (p.month || 0); } },
      { key: "venue", label: "Venue", sortValue: function (p) { return fold(p.venue); } },
    ];
    for (const key of ["contribution", "stage", "modality", "model_family", "target"]) {
      const facet = this.facetByKey[key];
      this.columns.push({ key: key, label: facet.label, facet: facet, sortValue: function (p) { return [].concat(p[key] || []).join(" "); } });
    }
    this.columns.push({ key: "links", label: "Links" });
    this.state = this.readState();
    this.shown = PAGE_SIZE;
  }

  // --- state <-> query string ---------------------------------------------------------------------------------------

  // The free text is `text`, not `q`: Material opens its search dialog for ?q= (and highlights for ?h=).
  // A parameter the explorer does not understand (an unknown value, an unknown name, a value given twice) is not
  // applied, and readState lists it in `notUnderstood` so that the page says so instead of silently showing everything.
  const MATERIAL_PARAMETERS = ["q", "h"];

  Explorer.prototype.readState = function () {
    const params = new URLSearchParams(window.location.search);
    const state = { filters: {}, text: params.get("text") || "", code: params.get("code") === "1",
                    card: params.get("card") === "1", sort: DEFAULT_SORT.key, order: DEFAULT_SORT.order };
    const notUnderstood = [];
    const shown = function (name, value) {
      const text = name + "=" + value;
      return text.length > 60 ? text.slice(0, 59) + "\u2026" : text;
    };
    const known = {};
    for (const facet of this.facets) {
      known[facet.key] = true;
      const value = params.get(facet.key);
      if (value === null) continue;
      if (Object.prototype.hasOwnProperty.call(facet.meaning, value)) {
        state.filters[facet.key] = value;
      } else {
        notUnderstood.push(shown(facet.key, value) + " (no such " + facet.label.toLowerCase() + ")");
      }
    }
    for (const key of ["code", "card"]) {
      known[key] = true;
      const value = params.get(key);
      if (value !== null && value !== "1" && value !== "0") notUnderstood.push(shown(key, value) + " (use 1 or 0)");
    }
    const sortable = this.columns.filter(function (c) { return c.sortValue; }).map(function (c) { return c.key; });
    known.sort = known.order = known.text = true;
    const sort = params.get("sort"), order = params.get("order");
    if (sortable.indexOf(sort) >= 0) state.sort = sort;
    else if (sort !== null) notUnderstood.push(shown("sort", sort) + " (sort by one of: " + sortable.join(", ") + ")");
    if (order === "asc" || order === "desc") state.order = order;
    else if (order !== null) notUnderstood.push(shown("order", order) + " (use asc or desc)");
    const seen = {};
    for (const [name, value] of params) {
      if (MATERIAL_PARAMETERS.indexOf(name) >= 0) continue;
      if (!known[name]) notUnderstood.push(shown(name, value) + " (no such filter)");
      else if (seen[name]) notUnderstood.push(shown(name, value) + " (" + name + " given twice; the first is used)");
      seen[name] = true;
    }
    this.notUnderstood = notUnderstood;
    return state;
  };

  Explorer.prototype.writeState = function () {
    const params = new URLSearchParams();
    for (const facet of this.facets) {
      if (this.state.filters[facet.key]) params.set(facet.key, this.state.filters[facet.key]);
    }
    if (this.state.code) params.set("code", "1");
    if (this.state.card) params.set("card", "1");
    if (this.state.text.trim()) params.set("text", this.state.text.trim());
    if (this.state.sort !== DEFAULT_SORT.key || this.state.order !== DEFAULT_SORT.order) {
      params.set("sort", this.state.sort);
      params.set("order", this.state.order);
    }
    const query = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (query ? "?" + query : "") + window.location.hash);
  };

  // --- filtering ----------------------------------------------------------------------------------------------------

  Explorer.prototype.valuesOf = function (paper, key) {
    if (key === "year") return [String(paper.year)];
    if (key === "venue") return [paper.venue_series || paper.venue];
    const value = paper[key];
    return value === undefined ? [] : [].concat(value);
  };

  // Whether an entry passes every filter except the facet named `skip` (used to count that facet's values).
  Explorer.prototype.passes = function (item, terms, skip) {
    const paper = item.paper;
    for (const key in this.state.filters) {
      if (key !== skip && this.valuesOf(paper, key).indexOf(this.state.filters[key]) < 0) return false;
    }
    if (this.state.code && !paper.code) return false;
    if (this.state.card && [].concat(paper.card || []).length === 0) return false;
    for (const term of terms) {
      if (item.haystack.indexOf(term) < 0) return false;
    }
    return true;
  };

  Explorer.prototype.terms = function () {
    return fold(this.state.text).split(/\s+/).filter(Boolean);
  };

  // --- controls -----------------------------------------------------------------------------------------------------

  Explorer.prototype.start = function () {
    const self = this;
    this.container.replaceChildren();
    const form = element("form", "atlas-explorer__filters");
    form.setAttribute("role", "search");
    form.addEventListener("submit", function (event) { event.preventDefault(); });

    const textLabel = element("label", "atlas-explorer__field atlas-explorer__field--text");
    textLabel.appendChild(element("span", null, "Title, other name, author or venue"));
    this.textInput = element("input");
    this.textInput.type = "search";
    this.textInput.name = "text";
    this.textInput.placeholder = "e.g. erasing, SalUn, Gandikota";
    this.textInput.value = this.state.text;
    let pending = null;
    this.textInput.addEventListener("input", function () {
      clearTimeout(pending);
      pending = setTimeout(function () { self.state.text = self.textInput.value; self.update(); }, 120);
    });
    textLabel.appendChild(this.textInput);
    form.appendChild(textLabel);

    this.selects = {};
    for (const facet of this.facets) {
      const label = element("label", "atlas-explorer__field");
      label.appendChild(element("span", null, facet.label));
      const select = element("select");
      select.name = facet.key;
      select.appendChild(element("option", null, "any"));
      select.options[0].value = "";
      for (const [value, meaning] of facet.values) {
        const option = element("option", null, value);
        option.value = value;
        if (meaning) option.title = meaning;
        select.appendChild(option);
      }
      select.value = this.state.filters[facet.key] || "";
      select.addEventListener("change", function () { self.setFilter(facet.key, select.value); });
      label.appendChild(select);
      form.appendChild(label);
      this.selects[facet.key] = select;
    }

    this.checkboxes = {};
    for (const [key, text] of [["code", "has code"], ["card", "has executable card"]]) {
      const label = element("label", "atlas-explorer__check");
      const box = element("input");
      box.type = "checkbox";
      box.name = key;
      box.checked = this.state[key];
      box.addEventListener("change", function () { self.state[key] = box.checked; self.update(); });
      label.appendChild(box);
      label.appendChild(element("span", null, text));
      form.appendChild(label);
      this.checkboxes[key] = box;
    }

    const reset = element("button", "md-button atlas-explorer__reset", "Reset");
    reset.type = "button";
    reset.addEventListener("click", function () { self.reset(); });
    form.appendChild(reset);
    this.container.appendChild(form);

    this.notice = element("p", "atlas-explorer__notice");
    this.notice.setAttribute("role", "alert");
    this.notice.hidden = this.notUnderstood.length === 0;
    if (this.notUnderstood.length) {
      this.notice.textContent = "Not understood, so not applied: " + this.notUnderstood.join("; ") +
        ". The table shows the other filters.";
    }
    this.container.appendChild(this.notice);

    this.status = element("p", "atlas-explorer__status");
    this.status.setAttribute("aria-live", "polite");
    this.container.appendChild(this.status);

    const wrapper = element("div", "atlas-explorer__table md-typeset__scrollwrap");
    const table = element("table");
    const head = element("thead");
    const headRow = element("tr");
    this.headers = {};
    for (const column of this.columns) {
      const th = element("th");
      th.dataset.key = column.key;
      if (column.sortValue) {
        const button = element("button", "atlas-explorer__sort", column.label);
        button.type = "button";
        button.addEventListener("click", function () { self.sortBy(column.key); });
        th.appendChild(button);
      } else {
        th.textContent = column.label;
      }
      headRow.appendChild(th);
      this.headers[column.key] = th;
    }
    head.appendChild(headRow);
    table.appendChild(head);
    this.body = element("tbody");
    table.appendChild(this.body);
    wrapper.appendChild(table);
    this.container.appendChild(wrapper);

    this.more = element("button", "md-button atlas-explorer__more");
    this.more.type = "button";
    this.more.addEventListener("click", function () { self.shown += PAGE_SIZE; self.render(); });
    this.container.appendChild(this.more);
    this.update();
  };

  Explorer.prototype.setFilter = function (key, value) {
    if (value) this.state.filters[key] = value; else delete this.state.filters[key];
    this.update();
  };

  Explorer.prototype.reset = function () {
    this.notice.hidden = true;
    this.state = { filters: {}, text: "", code: false, card: false, sort: DEFAULT_SORT.key, order: DEFAULT_SORT.order };
    this.update();
  };

  Explorer.prototype.sortBy = function (key) {
    if (this.state.sort === key) {
      this.state.order = this.state.order === "asc" ? "desc" : "asc";
    } else {
      this.state.sort = key;
      this.state.order = key === "year" ? "desc" : "asc";
    }
    this.update();
  };

  // --- rendering ----------------------------------------------------------------------------------------------------

  Explorer.prototype.update = function () {
    this.shown = PAGE_SIZE;
    this.syncControls();
    this.writeState();
    const terms = this.terms();
    const self = this;
    this.matching = this.papers.filter(function (item) { return self.passes(item, terms, null); });
    const column = this.columns.find(function (c) { return c.key === self.state.sort; });
    const direction = this.state.order === "asc" ? 1 : -1;
    this.matching.sort(function (a, b) {
      const x = column.sortValue(a.paper), y = column.sortValue(b.paper);
      if (x < y) return -direction;
      if (x > y) return direction;
      return a.paper.title < b.paper.title ? -1 : a.paper.title > b.paper.title ? 1 : 0;
    });
    this.updateCounts(terms);
    this.render();
  };

  Explorer.prototype.syncControls = function () {
    if (this.textInput.value !== this.state.text) this.textInput.value = this.state.text;
    for (const key in this.selects) this.selects[key].value = this.state.filters[key] || "";
    for (const key in this.checkboxes) this.checkboxes[key].checked = this.state[key];
    for (const key in this.headers) {
      if (key === this.state.sort) {
        this.headers[key].setAttribute("aria-sort", this.state.order === "asc" ? "ascending" : "descending");
      } else {
        this.headers[key].removeAttribute("aria-sort");
      }
    }
  };

  // Each option shows how many entries it would leave, given the other filters.
  Explorer.prototype.updateCounts = function (terms) {
    for (const facet of this.facets) {
      const counts = {};
      for (const item of this.papers) {
        if (!this.passes(item, terms, facet.key)) continue;
        for (const value of this.valuesOf(item.paper, facet.key)) counts[value] = (counts[value] || 0) + 1;
      }
      const select = this.selects[facet.key];
      for (const option of select.options) {
        if (option.value) option.textContent = option.value + " (" + (counts[option.value] || 0) + ")";
      }
    }
  };

  Explorer.prototype.render = function () {
    const rows = document.createDocumentFragment();
    const visible = this.matching.slice(0, this.shown);
    for (const item of visible) rows.appendChild(this.row(item.paper));
    this.body.replaceChildren(rows);
    const total = this.papers.length;
    const count = this.matching.length;
    this.status.textContent = count === total ? "All " + total + " papers." :
      count === 0 ? "No paper matches these filters." : count + " of " + total + " papers match.";
    const rest = count - visible.length;
    this.more.hidden = rest <= 0;
    this.more.textContent = "Show " + Math.min(rest, PAGE_SIZE) + " more (" + rest + " not shown)";
  };

  Explorer.prototype.row = function (paper) {
    const self = this;
    const tr = element("tr");
    tr.dataset.id = paper.id;

    const title = element("td", "atlas-explorer__title");
    const link = element("a", null, paper.title);
    link.href = new URL(this.paperUrl.replace("{id}", encodeURIComponent(paper.id)), this.rootUrl).href;
    title.appendChild(link);
    if (paper.aliases) title.appendChild(element("div", "atlas-explorer__aliases", paper.aliases.join(" · ")));
    const authors = paper.authors || [];
    if (authors.length) {
      const names = element("div", "atlas-explorer__authors",
        authors.length > 3 ? authors.slice(0, 3).join(", ") + " et al." : authors.join(", "));
      if (authors.length > 3) names.title = authors.join(", ");
      title.appendChild(names);
    }
    tr.appendChild(title);
    tr.appendChild(element("td", null, paper.year));
    tr.appendChild(element("td", null, paper.venue));

    for (const column of this.columns) {
      if (!column.facet) continue;
      const cell = element("td");
      for (const value of this.valuesOf(paper, column.key)) {
        const chip = element("button", "atlas-badge atlas-badge--" + column.key, value);
        chip.type = "button";
        chip.title = (column.facet.meaning[value] || "") + " Click to filter by " + column.facet.label.toLowerCase() + " = " + value + ".";
        chip.addEventListener("click", function () { self.setFilter(column.key, value); });
        cell.appendChild(chip);
      }
      tr.appendChild(cell);
    }

    const links = element("td", "atlas-explorer__links");
    const code = safeHttpUrl(paper.code);
    if (code) {
      const a = element("a", null, "code");
      a.href = code;
      a.rel = "noopener";
      links.appendChild(a);
    }
    const cardNames = [].concat(paper.card || []); // a list of card names (one name in older data files)
    for (const name of cardNames) {
      const label = cardNames.length > 1 ? "card " + name : "card";
      const cardUrl = Object.prototype.hasOwnProperty.call(this.cards, name) ? this.cards[name] : null;
      if (cardUrl) {
        const a = element("a", null, label);
        a.href = new URL(cardUrl, this.rootUrl).href;
        a.title = "Executable card " + name;
        links.appendChild(a);
      } else {
        const span = element("span", "atlas-explorer__pending", label);
        span.title = "Executable card " + name + " (its page is not part of this build)";
        links.appendChild(span);
      }
    }
    tr.appendChild(links);
    return tr;
  };
})();
