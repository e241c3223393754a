// remark plugin: makes anchors written as inline HTML, such as the runbook's
// `<a id="runbook-…"></a>`, visible to remark-validate-links, which otherwise only knows
// heading slugs. Each HTML node that opens an element with an id or name attribute gets that
// value as its id. Must be used before remark-validate-links.
const attribute = /^<[a-zA-Z][\w-]*\s[^>]*?\b(?:id|name)\s*=\s*(?:"([^"]+)"|'([^']+)')/

export default function htmlAnchors() {
  return function (tree) {
    const walk = (node) => {
      if (node.type === 'html') {
        const m = attribute.exec(node.value)
        if (m) {
          node.data = node.data || {}
          node.data.hProperties = {...node.data.hProperties, id: m[1] || m[2]}
        }
      }
      for (const child of node.children || []) walk(child)
    }
    walk(tree)
  }
}
